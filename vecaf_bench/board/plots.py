"""Leaderboard plots (PNG, matplotlib's Agg backend: no display needed).

- Accuracy vs training batches: one panel per dataset x label budget, every batch budget in it
  (line style per budget), one line per row: the mean over seeds of the decision curve (validation
  top-1; test where the dataset has no validation split, said on the axis) with its 95% CI band,
  the dataset's whole-pool rows as the reference, and the target dashed. x is in batches, so rows
  of different batch budgets read against one target.
- Final test top-1 vs label budget (error bars: 95% CI), one line per method key and batch budget,
  when a dataset has more than one label budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from .rules import Board, Row
from .stats import mean_curve

STYLES = ("-", "--", ":", "-.")


def _colours(board: Board) -> dict[str, Any]:
    import matplotlib

    names = sorted({r.name for r in board.rows if not r.whole_pool})
    cmap = matplotlib.colormaps["tab10"]
    out: dict[str, Any] = {n: cmap(i % 10) for i, n in enumerate(names)}
    out.update({r.name: "black" for r in board.rows if r.whole_pool})
    return out


def _styles(rows: Sequence[Row]) -> dict[int, str]:
    """Line style per batch budget, the longest solid."""
    budgets = sorted({r.batch_budget for r in rows}, reverse=True)
    return {b: STYLES[i % len(STYLES)] for i, b in enumerate(budgets)}


def _grid(n: int) -> tuple[int, int]:
    cols = min(n, 3)
    return math.ceil(n / cols), cols


def _finish_axis(ax: Any, xlabel: str, ylabel: str, outside: bool = False) -> None:
    """Labels, grid and legend (OUTSIDE: right of the axes, for panels with many lines)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if outside:
        ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    else:
        ax.legend(fontsize=7, loc="best")


def _save(fig: Any, axes: Any, used: int, path: str | Path) -> Path:
    """Blanks the unused panels and writes the PNG."""
    import matplotlib.pyplot as plt

    for ax in list(axes.flat)[used:]:
        ax.axis("off")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curve_panels(board: Board) -> list[tuple[str, int]]:
    """(dataset, label budget) of every panel of the curves plot: the subset budgets, and the whole
    pool for a dataset that has no other."""
    panels = sorted({(r.dataset, r.label_budget) for r in board.rows if not r.whole_pool})
    for ds in sorted({r.dataset for r in board.rows}):
        if not any(p[0] == ds for p in panels):
            panels += sorted({(r.dataset, r.label_budget) for r in board.rows if r.dataset == ds})
    return panels


def _plot_row(ax: Any, r: Row, colour: Any, style: str, several_budgets: bool) -> None:
    mc = mean_curve(r.decision_curves())
    x = np.array([m[0] for m in mc])
    y = np.array([m[1] for m in mc])
    half = np.array([m[2] if m[2] is not None else 0.0 for m in mc])
    label = r.name + (f" · {r.batch_budget} batches" if several_budgets else "") + f" (n={r.n})"
    label += " incomplete" if r.incomplete else ""
    ax.plot(x, y, marker="o", ms=3, lw=1.4 if r.whole_pool else 1.8, color=colour, label=label, ls=style)
    if r.n > 1:  # the band is clipped to the possible 0-100%
        ax.fill_between(x, np.clip(y - half, 0, 100), np.clip(y + half, 0, 100), color=colour,
                        alpha=0.08 if r.whole_pool else 0.18, lw=0)


def plot_curves(board: Board, path: str | Path) -> Path:
    """Decision accuracy vs training batches, every batch budget, one panel per dataset x label
    budget (see the module docstring)."""
    plt = _pyplot()
    panels = curve_panels(board)
    colours = _colours(board)
    nrows, ncols = _grid(len(panels))
    fig, axes = plt.subplots(nrows, ncols, figsize=(8.4 * ncols, 4.2 * nrows), squeeze=False)
    for ax, (ds, budget) in zip(axes.flat, panels, strict=False):
        rows = [r for r in board.rows if (r.dataset, r.label_budget) == (ds, budget)]
        rows += [r for r in board.rows if r.dataset == ds and r.whole_pool and r not in rows]
        styles = _styles(rows)
        for r in rows:
            _plot_row(ax, r, colours.get(r.name, "grey"), styles[r.batch_budget], len(styles) > 1)
        t = board.targets.get(ds)
        if t:
            ax.axhline(t.value, ls="--", color="crimson", lw=1.2, label=f"target {t.value:.1f}%")
        first = rows[0]
        req = first.label_budget_requested
        btext = "all" if first.whole_pool else f"{budget} images" + (f" ({req})" if req != str(budget) else "")
        ax.set_title(f"{ds} · {btext}", fontsize=10)
        _finish_axis(ax, "training batches", f"{board.curve_sources.get(ds, 'test')} top-1 (%)", outside=True)
    fig.suptitle("accuracy vs training batches\n(mean over seeds, 95% CI band; validation top-1 unless the axis "
                 "says test)", fontsize=9)
    return _save(fig, axes, len(panels), path)


def _sweep_datasets(board: Board) -> list[str]:
    return sorted(ds for ds in {r.dataset for r in board.rows}
                  if len({r.label_budget for r in board.rows if r.dataset == ds and not r.whole_pool}) > 1)


def has_budget_sweep(board: Board) -> bool:
    return bool(_sweep_datasets(board))


def plot_budget_sweep(board: Board, path: str | Path) -> Path | None:
    """Final test top-1 vs label budget per method key and batch budget (error bars: 95% CI), one
    panel per dataset with more than one label budget; whole-pool rows at those batch budgets as
    dotted lines. None when no dataset has a sweep."""
    datasets = _sweep_datasets(board)
    if not datasets:
        return None
    plt = _pyplot()
    colours = _colours(board)
    nrows, ncols = _grid(len(datasets))
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.6 * ncols, 4.2 * nrows), squeeze=False)
    for ax, ds in zip(axes.flat, datasets, strict=False):
        rows = [r for r in board.rows if r.dataset == ds]
        subsets = [r for r in rows if not r.whole_pool]
        budgets = sorted({r.label_budget for r in subsets})
        lines = sorted({(r.name, r.batch_budget) for r in subsets})
        several = len({r.batch_budget for r in rows}) > 1
        styles = _styles(subsets)
        for i, (name, batches) in enumerate(lines):
            pts = sorted((r.label_budget, r.mean, r.ci or 0.0) for r in subsets
                         if r.name == name and r.batch_budget == batches)
            dodge = 1 + 0.012 * (i - (len(lines) - 1) / 2)  # error bars side by side, not on top of each other
            yerr = [[min(p[2], p[1]) for p in pts], [min(p[2], 100 - p[1]) for p in pts]]  # clipped to 0-100%
            ax.errorbar([p[0] * dodge for p in pts], [p[1] for p in pts], yerr=yerr, marker="o", capsize=3,
                        color=colours.get(name, "grey"), ls=styles[batches],
                        label=name + (f" ({batches} batches)" if several else ""))
        for r in rows:
            if r.whole_pool and (r.batch_budget in styles or r.reference):
                ax.axhline(r.mean, ls=":", color="black", lw=1.2,
                           label=f"{r.name} @{r.batch_budget} ({r.mean:.1f}%)")
        if budgets[-1] / max(budgets[0], 1) >= 10:
            ax.set_xscale("log")
        ax.set_xticks(budgets)
        req = {r.label_budget: r.label_budget_requested for r in rows}
        ax.set_xticklabels([f"{b}\n({req[b]})" if req.get(b) not in (None, str(b)) else str(b) for b in budgets],
                           fontsize=8)
        ax.minorticks_off()
        ax.set_title(f"{ds}: final test accuracy vs label budget", fontsize=10)
        _finish_axis(ax, "label budget (images)", "final test top-1 (%)")
    return _save(fig, axes, len(datasets), path)


def write_plots(board: Board, path: str | Path) -> list[Path]:
    """The curves in PATH; the budget sweep (if any) beside it as <stem>-budgets<suffix>."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise UserError(f"--plot '{path}' must be a .png file name.")
    if not board.rows:
        raise UserError("no finished runs to plot.")
    out = [plot_curves(board, path)]
    sweep = plot_budget_sweep(board, path.with_name(f"{path.stem}-budgets{path.suffix}"))
    if sweep is not None:
        out.append(sweep)
    return out

"""Leaderboard plots (PNG, matplotlib's Agg backend: no display needed): accuracy vs training
batches with a 95% CI band over seeds, one panel per dataset x label budget x batch budget, `full`
as the reference curve and the target dashed; and final accuracy vs label budget when a dataset
has more than one budget.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError
from .leaderboard import Board, mean_curve


def _colours(board: Board) -> dict[str, Any]:
    import matplotlib

    names = sorted({r.selector for r in board.rows if not r.whole_pool})
    cmap = matplotlib.colormaps["tab10"]
    out: dict[str, Any] = {n: cmap(i % 10) for i, n in enumerate(names)}
    out.update({r.selector: "black" for r in board.rows if r.whole_pool})
    return out


def _grid(n: int) -> tuple[int, int]:
    cols = min(n, 3)
    return math.ceil(n / cols), cols


def _finish_axis(ax: Any, xlabel: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test top-1 (%)")
    ax.grid(alpha=0.3)
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


def plot_curves(board: Board, path: str | Path) -> Path:
    """Accuracy vs training batches per selector, 95% CI band over seeds, one panel per dataset x
    label budget x batch budget; `full` (the reference) in every panel of its dataset; the target dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r.dataset, r.label_budget, r.batch_budget) for r in board.rows if not r.reference})
    for ds in sorted({r.dataset for r in board.rows}):
        if not any(p[0] == ds for p in panels):
            panels += sorted({(r.dataset, r.label_budget, r.batch_budget) for r in board.rows if r.dataset == ds})
    colours = _colours(board)
    nrows, ncols = _grid(len(panels))
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.9 * nrows), squeeze=False)
    for ax, (ds, budget, batches) in zip(axes.flat, panels, strict=False):
        rows = [r for r in board.rows if (r.dataset, r.label_budget, r.batch_budget) == (ds, budget, batches)]
        rows += [r for r in board.rows if r.dataset == ds and r.reference and r not in rows]
        for r in rows:
            mc = mean_curve(r.records)
            x = np.array([m[0] for m in mc])
            y = np.array([m[1] for m in mc])
            half = np.array([m[2] if m[2] is not None else 0.0 for m in mc])
            colour = colours.get(r.selector, "grey")
            label = f"{r.selector} (n={r.n})" + (" reference" if r.reference else "")
            ax.plot(x, y, marker="o", ms=3, lw=1.8 if not r.reference else 1.4, color=colour, label=label,
                    ls="-" if not r.reference else "-.")
            if r.n > 1:  # the band is clipped to the possible 0-100%
                ax.fill_between(x, np.clip(y - half, 0, 100), np.clip(y + half, 0, 100), color=colour,
                                alpha=0.08 if r.reference else 0.18, lw=0)
        t = board.targets.get(ds)
        if t:
            ax.axhline(t[0], ls="--", color="crimson", lw=1.2, label=f"target {t[0]:.1f}%")
        first = rows[0]
        req = first.label_budget_requested
        btext = "all" if first.whole_pool else f"{budget} images" + (f" ({req})" if req != str(budget) else "")
        ax.set_title(f"{ds} · {btext} · {batches} batches", fontsize=10)
        _finish_axis(ax, "training batches")
    fig.suptitle("accuracy vs training batches (mean over seeds, 95% CI band)", fontsize=11)
    return _save(fig, axes, len(panels), path)


def has_budget_sweep(board: Board) -> bool:
    for ds in {r.dataset for r in board.rows}:
        if len({r.label_budget for r in board.rows if r.dataset == ds and not r.whole_pool}) > 1:
            return True
    return False


def plot_budget_sweep(board: Board, path: str | Path) -> Path | None:
    """Final accuracy vs label budget per selector (error bars: 95% CI), one panel per dataset with
    more than one budget; `full` as a dotted line. None when no dataset has a sweep."""
    if not has_budget_sweep(board):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted(ds for ds in {r.dataset for r in board.rows}
                      if len({r.label_budget for r in board.rows if r.dataset == ds and not r.whole_pool}) > 1)
    colours = _colours(board)
    nrows, ncols = _grid(len(datasets))
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.9 * nrows), squeeze=False)
    for ax, ds in zip(axes.flat, datasets, strict=False):
        rows = [r for r in board.rows if r.dataset == ds]
        budgets = sorted({r.label_budget for r in rows if not r.whole_pool})
        lines = sorted({(r.selector, r.batch_budget) for r in rows if not r.whole_pool})
        for i, (sel, batches) in enumerate(lines):
            pts = sorted((r.label_budget, r.mean, r.ci or 0.0) for r in rows
                         if r.selector == sel and r.batch_budget == batches and not r.whole_pool)
            label = sel + (f" ({batches} batches)" if len({r.batch_budget for r in rows}) > 1 else "")
            dodge = 1 + 0.012 * (i - (len(lines) - 1) / 2)  # error bars side by side, not on top of each other
            # the interval, clipped to the possible 0-100%
            yerr = [[min(p[2], p[1]) for p in pts], [min(p[2], 100 - p[1]) for p in pts]]
            ax.errorbar([p[0] * dodge for p in pts], [p[1] for p in pts], yerr=yerr, marker="o",
                        capsize=3, color=colours.get(sel, "grey"), label=label)
        for r in rows:
            if r.reference:
                ax.axhline(r.mean, ls=":", color="black", lw=1.2, label=f"{r.selector} ({r.mean:.1f}%)")
        if budgets[-1] / max(budgets[0], 1) >= 10:
            ax.set_xscale("log")
        ax.set_xticks(budgets)
        req = {r.label_budget: r.label_budget_requested for r in rows}
        ax.set_xticklabels([f"{b}\n({req[b]})" if req.get(b) not in (None, str(b)) else str(b) for b in budgets],
                           fontsize=8)
        ax.minorticks_off()
        ax.set_title(f"{ds}: final accuracy vs label budget", fontsize=10)
        _finish_axis(ax, "label budget (images)")
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

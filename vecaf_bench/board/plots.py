"""Leaderboard plots (PNG, matplotlib's Agg backend: no display needed).

Colour is the method (its key without the recipe: `random` is one colour in every panel), line
style the batch budget, black the whole-pool reference; each legend names each of them once, so
a grid of 3 batch budgets x 2 recipes x 4 methods stays readable.

- Accuracy vs training batches: one panel per dataset x label budget (x recipe, when rows differ
  in recipe), every batch budget in it: the mean over seeds of the decision curve (validation
  top-1; test where the dataset has no validation split, said on the axis) with its 95% CI band,
  the dataset's whole-pool rows of the same recipe as the reference, and the target dashed. x is
  in batches, so rows of different batch budgets read against one target.
- Final test top-1 vs label budget (error bars: 95% CI), when a dataset has more than one label
  budget: one panel per dataset x recipe x batch budget, one line per method, the whole pool at
  that recipe and batch budget dotted.
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


def colour_key(r: Row) -> str:
    """The method without its recipe: what a colour stands for."""
    return r.name.replace(r.recipe_text, "", 1) if r.recipe_text else r.name


def _colours(board: Board) -> dict[str, Any]:
    import matplotlib

    names = sorted({colour_key(r) for r in board.rows if not r.whole_pool})
    # tab10 up to 10 methods; beyond, tab20 and then its colours with a darker shade: no two alike
    cmap = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    size = 10 if len(names) <= 10 else 20
    out: dict[str, Any] = {}
    for i, n in enumerate(names):
        r, g, b, _ = cmap(i % size)
        k = 0.6 ** (i // size)
        out[n] = (r * k, g * k, b * k, 1.0)
    out.update({colour_key(r): "black" for r in board.rows if r.whole_pool})
    return out


def _recipes(rows: Sequence[Row]) -> list[str]:
    """The recipe parts of the rows' names, in order ("" alone: one recipe)."""
    return sorted({r.recipe_text for r in rows})


def _styles(rows: Sequence[Row]) -> dict[int, str]:
    """Line style per batch budget, the longest solid."""
    budgets = sorted({r.batch_budget for r in rows}, reverse=True)
    return {b: STYLES[i % len(STYLES)] for i, b in enumerate(budgets)}


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


def curve_panels(board: Board) -> list[tuple[str, int, str]]:
    """(dataset, label budget, recipe text) of every panel of the curves plot: the subset budgets
    (x each recipe of the dataset), and the whole pool for a dataset that has no other."""
    panels: list[tuple[str, int, str]] = []
    for ds in sorted({r.dataset for r in board.rows}):
        rows = [r for r in board.rows if r.dataset == ds]
        budgets = sorted({r.label_budget for r in rows if not r.whole_pool}) or sorted({r.label_budget for r in rows})
        panels += [(ds, b, rec) for b in budgets for rec in _recipes(rows)]
    return panels


def _legend(ax: Any, colours: dict[str, Any], styles: dict[int, str], names: Sequence[str], extra: Sequence[Any],
            ns: dict[str, str]) -> None:
    """One entry per method (its colour, its seed count), one per batch budget (its line style)."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colours.get(n, "grey"), lw=2, label=n + ns.get(n, "")) for n in names]
    if len(styles) > 1:
        handles += [Line2D([], [], color="dimgrey", ls=st, lw=1.6, label=f"{b} batches")
                    for b, st in sorted(styles.items())]
    ax.legend(handles=handles + list(extra), fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              borderaxespad=0)


def _seeds_text(rows: Sequence[Row]) -> dict[str, str]:
    """' (n=5)' per method, ' (n=3-5, incomplete)' where its rows differ or lack seeds."""
    out: dict[str, str] = {}
    for n in {colour_key(r) for r in rows}:
        mine = [r for r in rows if colour_key(r) == n]
        lo, hi = min(r.n for r in mine), max(r.n for r in mine)
        out[n] = f" (n={lo}{'' if lo == hi else f'-{hi}'}{', incomplete' if any(r.incomplete for r in mine) else ''})"
    return out


def _plot_row(ax: Any, r: Row, colour: Any, style: str) -> None:
    mc = mean_curve(r.decision_curves())
    x = np.array([m[0] for m in mc])
    y = np.array([m[1] for m in mc])
    half = np.array([m[2] if m[2] is not None else 0.0 for m in mc])
    ax.plot(x, y, marker="o", ms=2.5, lw=1.4 if r.whole_pool else 1.8, color=colour, ls=style)
    if r.n > 1:  # the band is clipped to the possible 0-100%
        ax.fill_between(x, np.clip(y - half, 0, 100), np.clip(y + half, 0, 100), color=colour,
                        alpha=0.06 if r.whole_pool else 0.14, lw=0)


def _title(ds: str, first: Row, recipe: str) -> str:
    req = first.label_budget_requested
    btext = "all" if first.whole_pool else f"{first.label_budget} images" + (
        f" ({req})" if req != str(first.label_budget) else "")
    return f"{ds} · {btext}" + (f" · {recipe.strip(' []')}" if recipe else "")


def plot_curves(board: Board, path: str | Path) -> Path:
    """Decision accuracy vs training batches, every batch budget, one panel per dataset x label
    budget x recipe (see the module docstring)."""
    plt = _pyplot()
    from matplotlib.lines import Line2D

    panels = curve_panels(board)
    colours = _colours(board)
    ncols = max(1, len({p[2] for p in panels}))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(7.6 * ncols, 4.0 * nrows), squeeze=False, sharey=True)
    for ax, (ds, budget, recipe) in zip(axes.flat, panels, strict=False):
        mine = [r for r in board.rows if r.dataset == ds and r.recipe_text == recipe]
        rows = [r for r in mine if r.label_budget == budget]
        rows += [r for r in mine if r.whole_pool and r not in rows]
        styles = _styles(rows)
        for r in rows:
            _plot_row(ax, r, colours.get(colour_key(r), "grey"), styles[r.batch_budget])
        extra = []
        t = board.targets.get(ds)
        if t:
            ax.axhline(t.value, ls="--", color="crimson", lw=1.2)
            extra.append(Line2D([], [], ls="--", color="crimson", lw=1.2, label=f"target {t.value:.1f}%"))
        names = sorted({colour_key(r) for r in rows}, key=lambda n: (colours.get(n) == "black", n))
        _legend(ax, colours, styles, names, extra, _seeds_text(rows))
        ax.set_title(_title(ds, rows[0], recipe), fontsize=10)
        ax.set_xlabel("training batches")
        ax.set_ylabel(f"{board.curve_sources.get(ds, 'test')} top-1 (%)")
        ax.grid(alpha=0.3)
    fig.suptitle("accuracy vs training batches\n(mean over seeds, 95% CI band; validation top-1 unless the axis "
                 "says test)", fontsize=9)
    return _save(fig, axes, len(panels), path)


def _sweep_datasets(board: Board) -> list[str]:
    return sorted(ds for ds in {r.dataset for r in board.rows}
                  if len({r.label_budget for r in board.rows if r.dataset == ds and not r.whole_pool}) > 1)


def has_budget_sweep(board: Board) -> bool:
    return bool(_sweep_datasets(board))


def plot_budget_sweep(board: Board, path: str | Path) -> Path | None:
    """Final test top-1 vs label budget per method (error bars: 95% CI), one panel per dataset x
    recipe x batch budget of a dataset with more than one label budget; the whole pool at that
    recipe and batch budget dotted. None when no dataset has a sweep."""
    datasets = _sweep_datasets(board)
    if not datasets:
        return None
    plt = _pyplot()
    from matplotlib.lines import Line2D

    colours = _colours(board)
    panels = []
    for ds in datasets:
        subsets = [r for r in board.rows if r.dataset == ds and not r.whole_pool]
        panels += [(ds, rec, b) for rec in _recipes(subsets) for b in sorted({r.batch_budget for r in subsets})]
    ncols = min(3, max(len({(p[0], p[2]) for p in panels}), 1))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.0 * ncols + 1.8, 3.6 * nrows), squeeze=False, sharey=True)
    for ax, (ds, recipe, batches) in zip(axes.flat, panels, strict=False):
        rows = [r for r in board.rows if r.dataset == ds and r.recipe_text == recipe and r.batch_budget == batches]
        subsets = [r for r in rows if not r.whole_pool]
        budgets = sorted({r.label_budget for r in subsets})
        names = sorted({colour_key(r) for r in subsets})
        for i, name in enumerate(names):
            pts = sorted((r.label_budget, r.mean, r.ci or 0.0) for r in subsets if colour_key(r) == name)
            dodge = 1 + 0.015 * (i - (len(names) - 1) / 2)  # error bars side by side, not on top of each other
            yerr = [[min(p[2], p[1]) for p in pts], [min(p[2], 100 - p[1]) for p in pts]]  # clipped to 0-100%
            ax.errorbar([p[0] * dodge for p in pts], [p[1] for p in pts], yerr=yerr, marker="o", capsize=3,
                        color=colours.get(name, "grey"))
        extra = []
        for r in rows:
            if r.whole_pool:
                ax.axhline(r.mean, ls=":", color="black", lw=1.2)
                extra.append(Line2D([], [], ls=":", color="black", label=f"{colour_key(r)} ({r.mean:.1f}%)"))
        if budgets[-1] / max(budgets[0], 1) >= 10:
            ax.set_xscale("log")
        ax.set_xticks(budgets)
        req = {r.label_budget: r.label_budget_requested for r in rows}
        ax.set_xticklabels([f"{b}\n({req[b]})" if req.get(b) not in (None, str(b)) else str(b) for b in budgets],
                           fontsize=8)
        ax.minorticks_off()
        ax.set_title(f"{ds} · {batches} batches" + (f" · {recipe.strip(' []')}" if recipe else ""), fontsize=10)
        _legend(ax, colours, {}, names, extra, _seeds_text(subsets))
        ax.set_xlabel("label budget (images)")
        ax.set_ylabel("final test top-1 (%)")
        ax.grid(alpha=0.3)
    fig.suptitle("final test accuracy vs label budget (mean over seeds, 95% CI)", fontsize=9)
    return _save(fig, axes, len(panels), path)


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

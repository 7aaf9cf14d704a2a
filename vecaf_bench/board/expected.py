"""Published numbers a suite expects to reproduce, and the board's rows set against them.

A paper suite (benchmarks/paper-activeft.yaml) carries an `expected` section: the published top-1
of each (dataset, label budget, selector) and how far a rerun may land from it (the tolerance: the
published spread and the rerun gaps known in the literature). `vecaf-bench leaderboard DIR
--expected SUITE.yaml` then adds a table that says, cell by cell, whether this run reproduced the
paper: within the tolerance, below or above it, or not run. A reproduction is judged on means
over seeds; the table shows the 95% interval beside each so a reader sees when "within" is only
because the interval is wide.

The section's shape (every label budget list aligned with `label_budgets`):

    expected:
      source: ActiveFT (CVPR 2023) Table 1, ...      # where the numbers come from
      metric: final                                    # final | best (best-on-validation top-1)
      tolerance: 3.0                                   # points either side, unless a row says otherwise
      datasets:
        cifar10:
          label_budgets: [0.5%, 1%, 2%]
          rows:
            random: [77.3, 82.2, 88.9]
            coreset: {published_as: FDS (k-center), top1: [64.5, 73.2, 81.4]}
            kmeans: {top1: [83.0, 85.9, 89.6], tolerance: 9.0, why: ActiveDC's rerun moved it ~9 points}
      not_implemented:                                 # published rows no selector here computes
        - {published_as: ALFA-Mix (batch AL), why: ...}

A value of a row may be null where the paper has no number (batch-AL methods at the smallest
budget).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UserError, did_you_mean

if TYPE_CHECKING:
    from .rules import Board, Row

METRICS = ("final", "best")
SECTION_KEYS = ("source", "metric", "tolerance", "datasets", "not_implemented", "note")
DATASET_KEYS = ("label_budgets", "rows")
ROW_KEYS = ("top1", "published_as", "tolerance", "why")


@dataclass
class Cell:
    """One published number: dataset, label budget, selector, its value and tolerance."""

    dataset: str
    label_budget: str
    selector: str
    published_as: str
    top1: float
    tolerance: float
    why: str = ""


@dataclass
class Expected:
    source: str
    metric: str
    cells: list[Cell]
    not_implemented: list[dict[str, str]] = field(default_factory=list)
    note: str = ""


@dataclass
class Verdict:
    cell: Cell
    rows: list[Row]  # the board rows of this cell (one per batch budget / recipe); none: not run
    ours: float | None = None
    ci: float | None = None
    seeds: int = 0
    gap: float | None = None  # ours - published
    verdict: str = "not run"  # within | below | above | not run


def _fail(where: str, what: str) -> UserError:
    return UserError(f"expected numbers in {where}: {what}")


def _number(value: Any, where: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise _fail(where, f"{what} must be a number, got {value!r}.")
    return float(value)


def _keys(entry: Mapping[str, Any], allowed: Sequence[str], where: str, what: str) -> None:
    for key in entry:
        if key not in allowed:
            raise _fail(where, f"{what} has key '{key}'.{did_you_mean(str(key), allowed)} Its keys: "
                        f"{', '.join(allowed)}.")


def parse_expected(
    section: Any,
    where: str,
    selectors: Sequence[str] | None = None,
    budgets: Mapping[str, Sequence[str]] | None = None,
) -> Expected:
    """The `expected` section, checked: with the suite's `selectors` and each dataset's label
    `budgets` given, a published row must name a selector of the suite and a budget it runs."""
    from ..config import parse_label_budget

    if not isinstance(section, Mapping):
        raise _fail(where, f"'expected' must be a mapping with {', '.join(SECTION_KEYS)}, "
                    f"got {type(section).__name__}.")
    _keys(section, SECTION_KEYS, where, "'expected'")
    metric = str(section.get("metric", "final"))
    if metric not in METRICS:
        raise _fail(where, f"metric '{metric}' is unknown; use final or best.{did_you_mean(metric, METRICS)}")
    default_tol = _number(section.get("tolerance", 3.0), where, "tolerance")
    datasets = section.get("datasets")
    if not isinstance(datasets, Mapping) or not datasets:
        raise _fail(where, "'datasets' must map each dataset name to its label_budgets and rows.")
    cells: list[Cell] = []
    for ds, entry in datasets.items():
        at = f"dataset '{ds}'"
        if not isinstance(entry, Mapping):
            raise _fail(where, f"{at} must be a mapping with label_budgets and rows.")
        _keys(entry, DATASET_KEYS, where, at)
        lbs = [str(b) for b in entry.get("label_budgets") or []]
        if not lbs:
            raise _fail(where, f"{at} needs label_budgets (the columns of its rows), e.g. [1%, 2%].")
        for b in lbs:
            parse_label_budget(b)
        if budgets is not None:
            if ds not in budgets:
                raise _fail(where, f"{at} is not a dataset of the suite ({', '.join(budgets)}).")
            runs = {parse_label_budget(b) for b in budgets[ds]}
            missing = [b for b in lbs if parse_label_budget(b) not in runs]
            if missing:
                raise _fail(where, f"{at}: label budget {missing[0]} is not run by the suite "
                            f"(its budgets: {', '.join(map(str, budgets[ds]))}).")
        rows = entry.get("rows")
        if not isinstance(rows, Mapping) or not rows:
            raise _fail(where, f"{at} needs rows: selector -> its published top-1 per label budget.")
        for sel, value in rows.items():
            sel = str(sel)
            row_at = f"{at}, row '{sel}'"
            if selectors is not None and sel not in selectors:
                raise _fail(where, f"{row_at} is not a selector of the suite.{did_you_mean(sel, selectors)} "
                            f"Its selectors: {', '.join(selectors)}.")
            spec = value if isinstance(value, Mapping) else {"top1": value}
            _keys(spec, ROW_KEYS, where, row_at)
            values = spec.get("top1")
            if not isinstance(values, list) or len(values) != len(lbs):
                raise _fail(where, f"{row_at} needs one top-1 (or null) per label budget ({len(lbs)}: "
                            f"{', '.join(lbs)}), got {values!r}.")
            tols = spec.get("tolerance", default_tol)
            tols = tols if isinstance(tols, list) else [tols] * len(lbs)
            if len(tols) != len(lbs):
                raise _fail(where, f"{row_at}: tolerance must be one number or one per label budget.")
            for b, v, t in zip(lbs, values, tols, strict=True):
                if v is None:
                    continue
                tol = _number(t, where, f"{row_at} tolerance")
                if tol < 0:
                    raise _fail(where, f"{row_at} tolerance must be >= 0, got {tol}.")
                cells.append(Cell(str(ds), b, sel, str(spec.get("published_as", sel)),
                                  _number(v, where, f"{row_at} top-1 at {b}"), tol, str(spec.get("why", ""))))
    missing_impl = section.get("not_implemented") or []
    if not isinstance(missing_impl, list) or not all(isinstance(m, Mapping) for m in missing_impl):
        raise _fail(where, "'not_implemented' must be a list of {published_as, why}.")
    return Expected(str(section.get("source", "")), metric, cells,
                    [{str(k): str(v) for k, v in m.items()} for m in missing_impl], str(section.get("note", "")))


def load_expected(path: str | Path) -> Expected:
    """The `expected` section of a suite file (for `leaderboard --expected`)."""
    from ..config import load_yaml

    p = Path(path)
    if not p.is_file():
        raise UserError(f"--expected file '{path}' does not exist. Give a suite file with an 'expected' section, "
                        "e.g. benchmarks/paper-activeft.yaml.")
    data = load_yaml(p)
    if not isinstance(data, Mapping) or "expected" not in data:
        raise UserError(f"--expected file '{path}' has no 'expected' section (the published numbers a suite "
                        "reproduces); benchmarks/paper-activeft.yaml has one to copy.")
    return parse_expected(data["expected"], str(path))


def judge(board: Board, expected: Expected) -> list[Verdict]:
    """Every published cell against the board's rows of that dataset, label budget and selector."""
    from ..config import parse_label_budget

    out = []
    for cell in expected.cells:
        want = parse_label_budget(cell.label_budget)
        rows = [
            r for r in board.rows
            if r.dataset == cell.dataset and r.selector == cell.selector and not r.whole_pool
            and _budget(r.label_budget_requested) == want
        ]  # fmt: skip
        v = Verdict(cell, rows)
        if rows:
            r = max(rows, key=lambda r: (r.batch_budget, r.n))  # the longest training of the cell
            ours, ci = (r.mean, r.ci) if expected.metric == "final" else (r.best_mean, r.best_ci)
            if ours is not None:
                v.ours, v.ci, v.seeds, v.gap = ours, ci, r.n, ours - cell.top1
                v.verdict = "within" if abs(v.gap) <= cell.tolerance else ("below" if v.gap < 0 else "above")
        out.append(v)
    return out


def _budget(text: str) -> tuple[str, float] | None:
    from ..config import parse_label_budget

    try:
        return parse_label_budget(text)
    except UserError:
        return None


HEAD = ["dataset", "label budget", "selector", "published", "tolerance", "ours", "seeds", "gap", "verdict"]


def lines(verdicts: Sequence[Verdict]) -> list[list[str]]:
    out = []
    for v in verdicts:
        c = v.cell
        name = c.selector if c.published_as == c.selector else f"{c.selector} ({c.published_as})"
        ours = "-" if v.ours is None else f"{v.ours:.1f}" + (f" ± {v.ci:.1f}" if v.ci is not None else "")
        gap = "-" if v.gap is None else f"{v.gap:+.1f}"
        out.append([c.dataset, c.label_budget, name, f"{c.top1:.1f}", f"± {c.tolerance:g}", ours,
                    str(v.seeds or "-"), gap, v.verdict])
    return out


def summary_line(expected: Expected, verdicts: Sequence[Verdict]) -> str:
    counts = {k: sum(v.verdict == k for v in verdicts) for k in ("within", "below", "above", "not run")}
    return (f"{counts['within']} of {len(verdicts)} published cells reproduced within their tolerance "
            f"({counts['below']} below, {counts['above']} above, {counts['not run']} not run); metric: "
            f"{expected.metric} top-1, mean over seeds ± 95% interval.")


def to_markdown(expected: Expected, verdicts: Sequence[Verdict]) -> str:
    out = ["", "## Against the published numbers", ""]
    if expected.source:
        out += [f"Source: {expected.source}", ""]
    out += ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    out += ["| " + " | ".join(x.replace("|", "\\|") for x in line) + " |" for line in lines(verdicts)]
    out += ["", summary_line(expected, verdicts)]
    wider = [v.cell for v in verdicts if v.cell.why]
    seen = set()
    for c in wider:
        if (c.selector, c.why) not in seen:
            seen.add((c.selector, c.why))
            out.append(f"- {c.selector}, tolerance ± {c.tolerance:g}: {c.why}")
    for m in expected.not_implemented:
        out.append(f"- not implemented here: {m.get('published_as', '?')}: {m.get('why', '')}")
    if expected.note:
        out.append(f"- {expected.note}")
    return "\n".join(out) + "\n"


def to_rich(expected: Expected, verdicts: Sequence[Verdict]) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title="against the published numbers", caption=expected.source or None)
    for h in HEAD:
        table.add_column(h, justify="right" if h in ("published", "ours", "gap", "seeds") else "left")
    style = {"within": "green", "below": "red", "above": "yellow", "not run": "dim"}
    for v, line in zip(verdicts, lines(verdicts), strict=True):
        table.add_row(*line[:-1], Text(line[-1], style=style[v.verdict]))
    return Group(table, Text(summary_line(expected, verdicts)))


def to_json(expected: Expected, verdicts: Sequence[Verdict]) -> dict[str, Any]:
    return {
        "source": expected.source,
        "metric": expected.metric,
        "cells": [
            {"dataset": v.cell.dataset, "label_budget": v.cell.label_budget, "selector": v.cell.selector,
             "published_as": v.cell.published_as, "published": v.cell.top1, "tolerance": v.cell.tolerance,
             "why": v.cell.why, "ours": v.ours, "ci": v.ci, "seeds": v.seeds, "gap": v.gap, "verdict": v.verdict}
            for v in verdicts
        ],
        "not_implemented": expected.not_implemented,
    }

"""The leaderboard's formats: markdown, a rich table for the terminal, CSV, JSON, a W&B table.

Markdown and the terminal show three tables: the board (one line per row), the paired
differences against random and the reference, and AUBC where a method swept label budgets; the
footnotes state the target, the curve it was read on and every mark. CSV has one flat line per
row carrying every number; JSON carries the same rows plus the paired and AUBC tables and the
targets. How each number is computed is in `vecaf_bench.leaderboard`'s docstring.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UserError

if TYPE_CHECKING:
    from rich.console import RenderableType

    from .rules import Board, Row
    from .stats import Paired

FORMATS = ("table", "markdown", "csv", "json", "html")
SIGNIFICANT = "*"


def uses_text(r: Any, sep: str) -> str | None:
    """What the row's selector read beside the pool features; a fixed selection read a picks file
    (what its own selector read is in the row's config)."""
    if r.selector == "selection":
        return "picks file"
    return (sep.join(r.uses) or "features") if r.uses is not None else None


# what `-o FILE` writes when --format is not given
EXTENSIONS = {".md": "markdown", ".csv": "csv", ".json": "json", ".html": "html", ".htm": "html"}


def check_format(fmt: str | None, output: str | None = None) -> str:
    """The format to write: --format (an unknown one refused, naming the valid ones), else the -o
    file's extension, else the terminal table."""
    if fmt is None:
        return EXTENSIONS.get(Path(output).suffix.lower(), "table") if output else "table"
    if fmt not in FORMATS:
        from ..errors import did_you_mean

        raise UserError(f"--format '{fmt}' is unknown; use one of {', '.join(FORMATS)}.{did_you_mean(fmt, FORMATS)}")
    return fmt


# ---------------------------------------------------------------------------------------------
# cell texts


def _f(v: float | None, digits: int = 2, suffix: str = "") -> str:
    return "-" if v is None else f"{v:.{digits}f}{suffix}"


def _pm(mean: float | None, ci: float | None, digits: int = 2) -> str:
    if mean is None:
        return "-"
    return f"{mean:.{digits}f}" + (f" ± {ci:.{digits}f}" if ci is not None else "")


def _seeds_text(r: Row) -> str:
    return f"{r.n}/{len(r.expected_seeds)} seeds" if r.incomplete else str(r.n)


def _flag(r: Row) -> str:
    return f" ({r.n}/{len(r.expected_seeds)} seeds)" if r.incomplete else ""


def _budget_text(r: Row) -> str:
    if r.whole_pool:
        return f"all ({r.label_budget})"
    req = r.label_budget_requested
    return f"{r.label_budget} ({req})" if req and req != str(r.label_budget) else str(r.label_budget)


def _btt_text(r: Row) -> str:
    if r.target is None:
        return "-"
    if r.batches_to_target is not None:
        return _pm(r.batches_to_target, r.btt_ci, 1)
    return f"not reached ({r.reached}/{r.n})"


def _speedup_text(r: Row) -> str:
    if r.speedup is None:
        return "-"
    if r.speedup_low is None or r.speedup_high is None:
        return f"{r.speedup:.2f}x"
    return f"{r.speedup:.2f}x [{r.speedup_low:.2f}, {r.speedup_high:.2f}]"


def _images(v: float | None) -> str:
    if v is None:
        return "?"
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e4:
        return f"{v / 1e3:.1f}k"
    return f"{v:.0f}"


def _features_text(r: Row) -> str:
    if r.feature_images is None:
        return "?"
    return "0 (cached)" if r.feature_images == 0 and r.feature_cached else _images(r.feature_images)


def _diff_text(p: Paired | None, mark: str = SIGNIFICANT) -> str:
    if p is None:
        return "-"
    text = f"{p.mean:+.2f}"
    if p.low is not None and p.high is not None:
        text += f" ± {(p.high - p.low) / 2:.2f}"
    else:
        text += f" (n={p.n})" if p.n < 2 else " (no spread)"
    return text + (mark if p.excludes_zero else "")


def _bold(text: str, on: bool, style: str) -> str:
    if not on:
        return text
    if style == "html":
        return f"<b>{text}</b>"
    return f"**{text}**" if style == "markdown" else f"[bold green]{text}[/]"


def headers(board: Board) -> list[str]:
    return [
        "dataset", "label budget", "batches", "method", "uses", "seeds",
        "final test top-1", "test @ best val", "Δ vs random", f"Δ vs {board.reference}",
        "batches to target", "speed-up vs full", "images (train+select)", "feature images",
        *[f"ood {n}" for n in board.ood_names], "selection s",
    ]


def _escape(text: str, style: str) -> str:
    """Text as a cell of STYLE: rich markup escaped ('[linear-probe]' is no tag), '|' in markdown."""
    if style == "rich":
        from rich.markup import escape

        return escape(text)
    if style == "html":
        import html

        return html.escape(text)
    return text.replace("|", "\\|")


def _cells(board: Board, r: Row, style: str) -> list[str]:
    vs_r, vs_ref = r.vs.get("random"), r.vs.get("reference")

    def e(text: str) -> str:
        return _escape(text, style)

    return [
        e(r.dataset + (f" {r.setting_note}" if r.setting_note else "")),
        e(_budget_text(r)),
        str(r.batch_budget),
        e(r.name),
        e(uses_text(r, ", ") or "?"),
        e(_seeds_text(r)),
        _bold(_pm(r.mean, r.ci), r.best_final, style) + _flag(r),
        _bold(_pm(r.best_mean, r.best_ci), r.best_at_best, style) + (_flag(r) if r.best_mean is not None else ""),
        _diff_text(vs_r.final if vs_r else None),
        _diff_text(vs_ref.final if vs_ref else None),
        _btt_text(r),
        e(_speedup_text(r)),
        _images(r.train_select_images),
        _features_text(r),
        *[_f(r.ood.get(n)) for n in board.ood_names],
        _f(r.selection_seconds),
    ]


PAIRED_HEADERS = ["dataset", "label budget", "batches", "method", "against", "metric", "shared seeds",
                  "mean diff", "95% CI", "Wilcoxon p"]


def _paired_lines(board: Board) -> list[list[str]]:
    out = []
    for r in board.rows:
        for c in r.vs.values():
            for metric, p in (("final", c.final), ("test @ best val", c.best)):
                if p is None:
                    continue
                ci = f"[{p.low:+.2f}, {p.high:+.2f}]" if p.low is not None and p.high is not None else "-"
                out.append([r.dataset + (f" {r.setting_note}" if r.setting_note else ""), _budget_text(r),
                            str(r.batch_budget), r.name, c.name, metric, str(p.n),
                            f"{p.mean:+.2f}" + (SIGNIFICANT if p.excludes_zero else ""), ci,
                            "-" if p.p is None else f"{p.p:.4f}"])
    return out


AUBC_HEADERS = ["dataset", "batches", "method", "label budgets", "seeds", "AUBC (mean ± 95% CI)"]


def _aubc_lines(board: Board) -> list[list[str]]:
    return [[a.dataset, str(a.batch_budget), a.name, ", ".join(map(str, a.budgets)),
             f"{len(a.seeds)}/{len(a.expected_seeds)} seeds" if a.incomplete else str(len(a.seeds)),
             _pm(a.mean, a.ci)] for a in board.aubc]


def footnotes(board: Board) -> list[str]:
    lines = []
    for ds in sorted(board.curve_sources):
        t = board.targets.get(ds)
        lines.append(f"{ds}: {t.text}" if t else f"{ds}: no target (no whole-pool run; pass --target)")
    lines.append(
        "batches to target: per seed, the first crossing of the decision curve (val top-1; test where noted), "
        "linearly interpolated between evaluations, then mean ± 95% CI; speed-up = full's mean / the row's "
        "(full at the row's batch budget, else at the target's), 95% CI by the delta method on the log ratio.")
    shared = sorted({c.final.n for r in board.rows for c in r.vs.values() if c.final is not None and c.final.n > 1})
    floor = "; ".join(f"{n} seeds: {2 / 2 ** n:.4g}" for n in shared) or "5 seeds: 0.0625"
    lines.append(
        f"Δ: paired difference of final test top-1 over shared seeds (mean ± paired 95% t half-width); "
        f"{SIGNIFICANT}: the interval excludes 0. Wilcoxon p in the paired table; the smallest exact two-sided p "
        f"with n shared seeds is 2 / 2^n ({floor}). Bold: the highest mean of its setting among complete rows.")
    lines.append("images (train+select): training image-passes + selection forward images, mean over seeds; "
                 "feature images: feature extraction, counted apart.")
    return lines + board.notes


def _md_table(head: Sequence[str], lines: Sequence[Sequence[str]], escape: bool = False) -> list[str]:
    rows = [[_escape(c, "markdown") for c in cells] if escape else list(cells) for cells in lines]
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(c) + " |" for c in rows]


def to_markdown(board: Board) -> str:
    out = _md_table(headers(board), [_cells(board, r, "markdown") for r in board.rows])
    paired = _paired_lines(board)
    if paired:
        out += ["", "Paired differences (row - other, over shared seeds):", ""]
        out += _md_table(PAIRED_HEADERS, paired, escape=True)
    if board.aubc:
        out += ["", "Area under the budget curve (final test top-1 vs label budget, normalised by the budget "
                "range):", ""] + _md_table(AUBC_HEADERS, _aubc_lines(board), escape=True)
    return "\n".join(out + [""] + [f"- {n}" for n in footnotes(board)]) + "\n"


SHORT = {"label budget": "budget", "final test top-1": "final top-1", "test @ best val": "@ best val",
         "batches to target": "to target", "speed-up vs full": "speed-up", "selection s": "sel. s",
         "images (train+select)": "images (tr+sel)", "feature images": "feat. images"}


def _rich_table(
    title: str, head: Sequence[str], lines: Sequence[Sequence[str]], caption: str = "", escape: bool = False
) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left", caption=caption or None, caption_justify="left", pad_edge=False)
    for h in head:
        wraps = h in ("method", "uses", "batches to target", "against") or h.startswith("ood ")
        table.add_column(SHORT.get(h, h), overflow="fold", no_wrap=not wraps)
    for cells in lines:
        table.add_row(*[_escape(c, "rich") if escape else c for c in cells])
    return table


def to_table(board: Board) -> RenderableType:
    """Rich tables for the terminal: short headers, numbers never wrapped, the notes under them."""
    from rich.console import Group

    parts = [_rich_table("vecaf-bench leaderboard", headers(board), [_cells(board, r, "rich") for r in board.rows])]
    paired = _paired_lines(board)
    if paired:
        parts.append(_rich_table("paired differences (row - other, shared seeds)", PAIRED_HEADERS, paired, escape=True))
    if board.aubc:
        parts.append(_rich_table("area under the budget curve", AUBC_HEADERS, _aubc_lines(board), escape=True))
    from rich.markup import escape

    parts[-1].caption = escape("\n".join(footnotes(board)))
    return Group(*parts)


# ---------------------------------------------------------------------------------------------
# machine-readable


def _paired_fields(prefix: str, p: Paired | None) -> dict[str, Any]:
    return {f"{prefix}_diff": p.mean if p else None, f"{prefix}_low": p.low if p else None,
            f"{prefix}_high": p.high if p else None, f"{prefix}_p": p.p if p else None,
            f"{prefix}_n": p.n if p else None, f"{prefix}_significant": p.excludes_zero if p else None}


def row_fields(board: Board, r: Row) -> dict[str, Any]:
    """Every number of a row, flat (one CSV line)."""
    out: dict[str, Any] = {
        "dataset": r.dataset, "selector": r.selector, "label_budget": r.label_budget, "batch_budget": r.batch_budget,
        "method": r.name, "label": r.records[-1].label, "label_budget_requested": r.label_budget_requested,
        "batch_size": r.batch_size, "setting": json.dumps(r.setting, sort_keys=True, default=str),
        "identity": json.dumps(r.method, sort_keys=True, default=str), "whole_pool": r.whole_pool,
        "n": r.n, "expected_n": len(r.expected_seeds), "seeds": " ".join(map(str, r.seeds)),
        "missing_seeds": " ".join(str(s) for s in r.expected_seeds if s not in r.seeds), "incomplete": r.incomplete,
        "curve_source": r.curve_source, "mean_top1": r.mean, "ci95": r.ci,
        "best_test_top1": r.best_mean, "best_ci95": r.best_ci,
        "best_val_top1": (sum(r.best_val.values()) / len(r.best_val)) if r.best_val else None,
        "best_step": (sum(r.best_step.values()) / len(r.best_step)) if r.best_step else None,
        "target": r.target, "batches_to_target": r.batches_to_target, "batches_to_target_ci95": r.btt_ci,
        "reached": r.reached if r.target is not None else None, "images_to_target": r.images_to_target,
        "speedup": r.speedup, "speedup_low": r.speedup_low, "speedup_high": r.speedup_high,
        "speedup_reference": r.speedup_reference, "reference": r.reference,
    }
    for role in ("random", "reference"):
        c = r.vs.get(role)
        out[f"vs_{role}_method"] = c.name if c else None
        out.update(_paired_fields(f"vs_{role}_final", c.final if c else None))
        out.update(_paired_fields(f"vs_{role}_best", c.best if c else None))
    out.update({
        "train_images": r.train_images, "selection_images": r.selection_images,
        "train_select_images": r.train_select_images, "feature_images": r.feature_images,
        "feature_cached": r.feature_cached, "compute_derived": any(x.compute.derived for x in r.records),
        **{f"ood_{n}": r.ood.get(n) for n in board.ood_names},
        "selection_seconds": r.selection_seconds, "selection_forward_batches": r.selection_forward_batches,
        "uses": uses_text(r, " "),
    })
    return out


def records_table(board: Board) -> tuple[list[str], list[list[Any]]]:
    """Machine-readable columns and rows (csv, the W&B table)."""
    dicts = [row_fields(board, r) for r in board.rows]
    cols = list(dicts[0]) if dicts else []
    return cols, [[d[c] for c in cols] for d in dicts]


def to_csv(board: Board) -> str:
    cols, rows = records_table(board)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for row in rows:
        w.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


def _paired_json(p: Paired | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {"seeds": list(p.seeds), "mean": p.mean, "low": p.low, "high": p.high, "wilcoxon_p": p.p,
            "significant": p.excludes_zero}


def to_json(board: Board) -> str:
    rows = []
    for r in board.rows:
        d = row_fields(board, r)
        d["setting"], d["identity"] = r.setting, r.method
        d["per_seed"] = {str(s): {"final": r.final.get(s), "best_step": r.best_step.get(s),
                                  "best_val": r.best_val.get(s), "best_test": r.best_test.get(s),
                                  "crossing": r.crossings.get(s)} for s in r.seeds}
        rows.append(d)
    paired = [{"dataset": r.dataset, "label_budget": r.label_budget, "batch_budget": r.batch_budget,
               "method": r.name, "against": c.against, "other": c.name, "final": _paired_json(c.final),
               "best": _paired_json(c.best)} for r in board.rows for c in r.vs.values()]
    aubc = [{"dataset": a.dataset, "batch_budget": a.batch_budget, "method": a.name, "budgets": a.budgets,
             "seeds": a.seeds, "expected_seeds": a.expected_seeds, "incomplete": a.incomplete,
             "per_seed": {str(s): v for s, v in a.per_seed.items()}, "mean": a.mean, "ci95": a.ci} for a in board.aubc]
    return json.dumps(
        {
            "targets": {ds: {"top1": t.value, "text": t.text, "curve": t.curve, "fraction": t.fraction,
                             "reference": t.reference, "reference_batches": t.reference_batches,
                             "reference_mean": t.reference_mean} for ds, t in board.targets.items()},
            "curve_sources": board.curve_sources,
            "target_fraction": board.target_fraction,
            "reference": board.reference,
            "notes": board.notes,
            "rows": rows,
            "paired": paired,
            "aubc": aubc,
        },
        indent=2, default=str,
    ) + "\n"


def render(board: Board, fmt: str) -> str | RenderableType:
    check_format(fmt)
    if fmt == "table":
        return to_table(board)
    if fmt == "markdown":
        return to_markdown(board)
    if fmt == "csv":
        return to_csv(board)
    if fmt == "html":
        from .html import to_html

        return to_html(board)
    return to_json(board)


# ---------------------------------------------------------------------------------------------
# W&B


def log_to_wandb(
    board: Board,
    plots: Sequence[Path],
    mode: str,
    directory: str | Path,
    project: str = "vecaf-bench",
    entity: str | None = None,
    name: str = "leaderboard",
    source: str = "",
) -> Any:
    """The leaderboard as a wandb.Table and the plots as wandb.Image in a run of job type 'leaderboard'."""
    if mode not in ("online", "offline"):
        from ..errors import did_you_mean

        hint = did_you_mean(mode, ["online", "offline"])
        raise UserError(f"--wandb-mode must be online or offline, got '{mode}'.{hint}")
    import wandb

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cols, rows = records_table(board)
    try:
        run = wandb.init(
            project=project,
            entity=entity,
            job_type="leaderboard",
            name=name,
            dir=str(directory),
            mode=mode,  # type: ignore[arg-type]
            config={"source": source, "targets": {ds: t.value for ds, t in board.targets.items()},
                    "target_fraction": board.target_fraction, "reference": board.reference},
        )
    except Exception as e:
        raise UserError(
            f"W&B could not start in mode '{mode}' ({type(e).__name__}: {e}). Log in with `wandb login`, or use "
            "--wandb-mode offline."
        ) from None
    data = [[v if not isinstance(v, bool) else str(v) for v in row] for row in rows]
    payload: dict[str, Any] = {"leaderboard": wandb.Table(columns=list[str | int](cols), data=data)}
    for p in plots:
        payload[f"plots/{Path(p).stem}"] = wandb.Image(str(p))
    run.log(payload)
    run.summary.update({"groups": len(board.rows), "runs": sum(r.n for r in board.rows)})
    run.finish()
    return run

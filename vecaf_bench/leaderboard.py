"""Leaderboard: every finished run under a folder (or in a W&B project), grouped and compared.

The rules, so that a number in the table can be checked by hand:

- A group is dataset x label budget (images) x batch budget x selector; a selector run with
  `selector_options` is its own selector ("activeft {tau=0.1}"). Only runs whose summary says
  `status: finished` count; a seed found twice in a group counts once (the newest summary).
- n: the number of seeds. Mean test top-1 +- the 95% CI half-width over seeds, Student t with
  n-1 degrees of freedom: t(0.975, n-1) * s / sqrt(n), s the sample standard deviation; n = 1
  gives no interval.
- Accuracy at matched batches: per dataset, the largest evaluation step that is in the curve of
  every run on that dataset (every selector, budget and batch budget, `full` included); the
  group's mean top-1 at that step. With equal batch budgets and evaluation steps this is the final
  accuracy; with a longer `full` or a batch-budget sweep it compares at the batches all runs had.
- Target: `--target` (percent, like test top-1), else the mean final top-1 of `full` on the same
  dataset (its group with the most batches), else there is none.
- Batches to target: per seed, the first curve step whose top-1 >= target; the group's value is
  the mean over its seeds when every seed reached the target, and "not reached (k/n)" when any
  seed did not (a mean over the seeds that happened to get there would flatter the selector).
- `full` is the reference curve: its batches to target are read off its mean curve (the mean
  over seeds of top-1 at each step present in all its runs), so it reaches its own final mean by
  construction, where seeds below the mean never would one by one.
- Speed-up: full's batches to target / the group's (> 1: fewer batches than finetuning on all).
- OOD: per OOD name (a group mean such as `corruption`, or a split outside any group such as
  `imagenet-r`), the mean over seeds of the final top-1.
- Selection seconds and selection forward batches: means over seeds. `uses`: what the selector
  read beside the pool features (labels, model, text), from the summary.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from rich.table import Table

from .errors import UserError

FORMATS = ("table", "markdown", "csv", "json")


# ---------------------------------------------------------------------------------------------
# records: one finished run each


@dataclass
class Record:
    selector: str
    dataset: str
    label_budget: int
    label_budget_requested: str
    batch_budget: int
    seed: int
    top1: float
    curve: list[tuple[int, float]]
    options: dict[str, Any] = field(default_factory=dict)
    ood: dict[str, float] = field(default_factory=dict)
    selection_seconds: float = 0.0
    selection_forward_batches: float = 0.0
    uses: list[str] | None = None
    pool_size: int | None = None
    source: str = ""
    mtime: float = 0.0

    @property
    def name(self) -> str:
        if not self.options:
            return self.selector
        return f"{self.selector} {{{', '.join(f'{k}={v}' for k, v in sorted(self.options.items()))}}}"

    @property
    def whole_pool(self) -> bool:
        return self.pool_size is not None and self.label_budget == self.pool_size


def _ood_from_summary(s: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for g, v in (s.get("ood_groups") or {}).items():
        if isinstance(v, Mapping) and v.get("top1") is not None:
            out[g] = float(v["top1"])
    for n, v in (s.get("ood") or {}).items():
        if isinstance(v, Mapping) and not v.get("group") and v.get("top1") is not None:
            out[n] = float(v["top1"])
    return out


def _curve(
    points: Iterable[Mapping[str, Any]], step_key: str = "step", top1_key: str = "top1"
) -> list[tuple[int, float]]:
    pts = {}
    for p in points:
        if p.get(step_key) is not None and p.get(top1_key) is not None:
            pts[int(p[step_key])] = float(p[top1_key])
    return sorted(pts.items())


def record_from_summary(
    s: Mapping[str, Any], options: Mapping[str, Any] | None = None, source: str = ""
) -> Record | None:
    """A finished run's summary.json as a Record; None for an unfinished one."""
    if s.get("status") != "finished" or s.get("test_top1") is None:
        return None
    curve = _curve(s.get("curve") or [])
    return Record(
        selector=str(s["selector"]),
        dataset=str(s["dataset"]),
        label_budget=int(s["label_budget"]),
        label_budget_requested=str(s.get("label_budget_requested", s["label_budget"])),
        batch_budget=int(s["batch_budget"]),
        seed=int(s["seed"]),
        top1=float(s["test_top1"]),
        curve=curve or [(int(s.get("steps") or s["batch_budget"]), float(s["test_top1"]))],
        options=dict(options or {}),
        ood=_ood_from_summary(s),
        selection_seconds=float(s.get("selection_seconds") or 0.0),
        selection_forward_batches=float(s.get("selection_forward_batches") or 0.0),
        uses=list(s["uses"]) if s.get("uses") is not None else None,
        pool_size=int(s["pool_size"]) if s.get("pool_size") is not None else None,
        source=source,
    )


@dataclass
class RunScan:
    """The run folders under a leaderboard's folder: the finished ones as records, every other one
    named with what is wrong with it (damaged, failed, half-made, unfinished) and left out."""

    records: list[Record] = field(default_factory=list)
    left_out: dict[str, list[str]] = field(default_factory=dict)  # kind -> descriptions (with the path)

    def leave_out(self, kind: str, description: str) -> None:
        self.left_out.setdefault(kind, []).append(description)

    def count(self, kind: str) -> int:
        return len(self.left_out.get(kind, []))

    def notes(self) -> list[str]:
        """One sentence per kind left out, naming each folder (the first five) and what to do."""
        advice = {
            "damaged": "its summary.json cannot be read: run it again (a suite does so, keeping the old folder in "
                       ".attempts/) or delete the folder",
            "failed": "the run recorded its failure: fix the cause and run it again (a suite re-runs failed runs)",
            "half-made": "the run stopped before training: run it again, or delete the folder",
            "unfinished": "interrupted or still running: resume with vecaf-bench run --resume DIR, or run its suite "
                          "again",
        }
        out = []
        for kind in ("damaged", "failed", "half-made", "unfinished"):
            items = self.left_out.get(kind, [])
            if items:
                more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
                out.append(f"{len(items)} {kind} run(s) left out ({advice[kind]}): {'; '.join(items[:5])}{more}.")
        return out

    def nothing_message(self, where: str) -> str:
        """The message when no run is finished: what was found instead."""
        found = " ".join(self.notes())
        return (f"no finished runs in {where}." + (f" {found}" if found else "")
                + " Point it at the --out folder of finished runs.")


def _is_run_folder(d: Path, root: Path) -> bool:
    """A folder a run wrote, not a W&B or submitit folder, nor an attempt a suite moved aside."""
    from .suite import ATTEMPTS

    parts = d.relative_to(root).parts if d != root else ()
    return not any(p in (ATTEMPTS, "wandb", "submitit", "logs") or p.startswith(".") for p in parts)


def scan_runs(root: str | Path) -> RunScan:
    """Every run folder under `root` (recursively): finished runs as records; damaged, failed,
    half-made and unfinished ones named (see RunScan.notes), never mixed into the results."""
    from .suite import read_run_folder

    root = Path(root)
    if not root.is_dir():
        raise UserError(
            f"leaderboard folder '{root}' does not exist. Give the --out folder of your runs (or a suite's)."
        )
    scan = RunScan()
    folders = {p.parent for p in root.rglob("summary.json")} | {p.parent for p in root.rglob("config.yaml")}
    for d in sorted(f for f in folders if _is_run_folder(f, root)):
        if not (d / "summary.json").exists() and not _runs_config(d / "config.yaml"):
            continue  # some other tool's config.yaml
        state = read_run_folder(d)
        if state.kind != "finished":
            where = d / "summary.json" if state.kind == "damaged" else d
            detail = "checkpoint saved" if state.kind == "interrupted" else state.detail
            kind = "unfinished" if state.kind == "interrupted" else state.kind
            scan.leave_out(kind, f"{where} ({detail})" if detail else str(where))
            continue
        s = state.summary or {}
        if "selector" not in s:
            continue  # not a vecaf-bench summary
        options: dict[str, Any] = {}
        cfg = d / "config.yaml"
        if cfg.is_file():
            try:
                options = (yaml.safe_load(cfg.read_text()) or {}).get("selector_options") or {}
            except (yaml.YAMLError, AttributeError):
                options = {}
        try:
            rec = record_from_summary(s, options, source=str(d))
        except (KeyError, TypeError, ValueError) as e:
            what = f"lacks '{e.args[0]}'" if isinstance(e, KeyError) else f"holds a bad value ({e})"
            scan.leave_out("damaged", f"{d / 'summary.json'} (finished, but it {what})")
            continue
        if rec is None:
            scan.leave_out("damaged", f"{d / 'summary.json'} (finished, but it has no test_top1)")
            continue
        rec.mtime = (d / "summary.json").stat().st_mtime
        scan.records.append(rec)
    return scan


def _runs_config(path: Path) -> bool:
    """A config.yaml that vecaf-bench wrote (it names a selector)."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "selector" in data


def load_records(root: str | Path) -> tuple[list[Record], int]:
    """Every finished run's record under `root` and how many run folders were left out (damaged,
    failed, half-made or unfinished: `scan_runs` names them)."""
    scan = scan_runs(root)
    return scan.records, sum(len(v) for v in scan.left_out.values())


# ---- W&B -------------------------------------------------------------------------------------


def _ood_from_wandb(summary: Mapping[str, Any]) -> dict[str, float]:
    """`ood/<group>/mean_top1` and `ood/<split>/top1` (what the wandb tracker logs); a split whose name
    starts with a group's family ('corruption:fog:3' under 'corruption') is inside that group."""
    groups, splits = {}, {}
    for k, v in summary.items():
        if not k.startswith("ood/") or not isinstance(v, (int, float)):
            continue
        name, _, metric = k[4:].rpartition("/")
        if metric == "mean_top1":
            groups[name] = float(v)
        elif metric == "top1":
            splits[name] = float(v)
    families = {g.split("-")[0] for g in groups}
    out = dict(groups)
    for n, v in splits.items():
        if not (":" in n and n.split(":")[0] in families):
            out[n] = v
    return out


def record_from_wandb(
    summary: Mapping[str, Any], config: Mapping[str, Any], history: Sequence[Mapping[str, Any]] = (), source: str = ""
) -> Record | None:
    """A W&B run (its summary, config and the `train/step`, `test/top1` history) as the Record its
    summary.json gives; None for a run that did not finish or is not a vecaf-bench run."""
    if summary.get("status") != "finished":
        return None
    selector = summary.get("selector") or config.get("selector")
    top1 = summary.get("test_top1", summary.get("test/top1"))
    if selector is None or top1 is None:
        return None
    curve = _curve(history, "train/step", "test/top1")
    uses = summary.get("uses")
    if isinstance(uses, str):
        uses = [u for u in uses.replace(",", " ").split() if u]
    batch_budget = int(summary.get("batch_budget") or config["batch_budget"])
    return Record(
        selector=str(selector),
        dataset=str(summary.get("dataset") or config.get("dataset")),
        label_budget=int(summary.get("label_budget") or config.get("label_budget_count") or 0),
        label_budget_requested=str(summary.get("label_budget_requested") or config.get("label_budget")),
        batch_budget=batch_budget,
        seed=int(summary.get("seed", config.get("seed", 0))),
        top1=float(top1),
        curve=curve or [(int(summary.get("steps") or batch_budget), float(top1))],
        options=dict(config.get("selector_options") or {}),
        ood=_ood_from_wandb(summary),
        selection_seconds=float(summary.get("selection_seconds") or 0.0),
        selection_forward_batches=float(summary.get("selection_forward_batches") or 0.0),
        uses=list(uses) if uses is not None else None,
        pool_size=int(summary["pool_size"]) if summary.get("pool_size") is not None else None,
        source=source,
    )


def records_from_wandb(path: str, api: Any = None) -> list[Record]:
    """Every finished vecaf-bench run of W&B project ENTITY/PROJECT, read through wandb.Api()."""
    if path.count("/") != 1 or not all(path.split("/")):
        raise UserError(f"--from-wandb expects ENTITY/PROJECT, got '{path}'.")
    try:
        import wandb

        api = api or wandb.Api()
        records = []
        for run in api.runs(path):
            if getattr(run, "job_type", "run") not in (None, "", "run"):
                continue  # a leaderboard run, not a benchmark run
            summary = {k: run.summary[k] for k in run.summary.keys()}
            history = list(run.scan_history(keys=["train/step", "test/top1"]))
            rec = record_from_wandb(summary, dict(run.config), history, source=f"wandb:{path}/{run.id}")
            if rec is not None:
                records.append(rec)
    except UserError:
        raise
    except Exception as e:
        raise UserError(
            f"could not read the W&B project '{path}' ({type(e).__name__}: {e}). Check the entity/project name and "
            "that you are logged in (wandb login), or point the leaderboard at a results folder instead."
        ) from None
    return records


def fill_uses(records: list[Record], plugins: Sequence[str] = ()) -> None:
    """Runs read back from W&B carry no `uses`: take it from the selector plugin, when installed."""
    missing = {r.selector for r in records if r.uses is None}
    if not missing:
        return
    try:
        from .pluginmanager import PluginHost

        host = PluginHost(plugins)
    except Exception:
        return
    known = {}
    for name in missing:
        if name in host.selectors():
            known[name] = sorted(getattr(host.selectors().get(name).factory, "uses", ()) or ())
    for r in records:
        if r.uses is None and r.selector in known:
            r.uses = known[r.selector]


# ---------------------------------------------------------------------------------------------
# the board


def t_halfwidth(values: Sequence[float], confidence: float = 0.95) -> float | None:
    """Half-width of the Student-t confidence interval of the mean (n-1 dof); None for n < 2."""
    n = len(values)
    if n < 2:
        return None
    from scipy import stats

    s = float(np.std(values, ddof=1))
    return float(stats.t.ppf(0.5 + confidence / 2, n - 1) * s / math.sqrt(n))


def mean_curve(records: Sequence[Record], common: bool = False) -> list[tuple[int, float, float | None, int]]:
    """(step, mean top-1, CI half-width, n) per step; `common`: only steps every record has."""
    steps: dict[int, list[float]] = {}
    for r in records:
        for s, v in r.curve:
            steps.setdefault(s, []).append(v)
    out = []
    for s in sorted(steps):
        vals = steps[s]
        if common and len(vals) < len(records):
            continue
        out.append((s, float(np.mean(vals)), t_halfwidth(vals), len(vals)))
    return out


def first_step_at(curve: Iterable[tuple[int, float]], target: float) -> int | None:
    for step, top1 in sorted(curve):
        if top1 >= target:
            return step
    return None


@dataclass
class Row:
    dataset: str
    selector: str
    label_budget: int
    label_budget_requested: str
    batch_budget: int
    whole_pool: bool
    seeds: list[int]
    top1: list[float]
    mean: float
    ci: float | None
    matched_step: int | None
    matched_top1: float | None
    target: float | None
    batches_to_target: float | None
    reached: int
    speedup: float | None
    ood: dict[str, float]
    selection_seconds: float
    selection_forward_batches: float
    uses: list[str] | None
    reference: bool
    records: list[Record] = field(default_factory=list, repr=False)

    @property
    def n(self) -> int:
        return len(self.seeds)


@dataclass
class Board:
    rows: list[Row]
    targets: dict[str, tuple[float, str]]  # dataset -> (target, where it came from)
    matched_steps: dict[str, int | None]
    reference_steps: dict[str, int | None]  # dataset -> full's batches to target
    ood_names: list[str]
    notes: list[str]


def build_board(records: Sequence[Record], target: float | None = None) -> Board:
    """Groups the records and computes every column (the rules are in the module docstring)."""
    notes: list[str] = []
    groups: dict[tuple[str, int, int, str], dict[int, Record]] = {}
    dupes = 0
    for r in sorted(records, key=lambda r: r.mtime):
        key = (r.dataset, r.label_budget, r.batch_budget, r.name)
        if r.seed in groups.setdefault(key, {}):
            dupes += 1
        groups[key][r.seed] = r  # the newest summary of a seed wins
    if dupes:
        notes.append(f"{dupes} run(s) repeated a seed of their group; the newest summary of each seed was used.")

    datasets = sorted({k[0] for k in groups})
    matched: dict[str, int | None] = {}
    for ds in datasets:
        runs = [r for k, g in groups.items() if k[0] == ds for r in g.values()]
        common = set.intersection(*(set(s for s, _ in r.curve) for r in runs)) if runs else set()
        matched[ds] = max(common) if common else None

    targets: dict[str, tuple[float, str]] = {}
    reference: dict[str, list[Record]] = {}
    ref_keys = set()
    for ds in datasets:
        fulls = [k for k in groups if k[0] == ds and any(r.whole_pool for r in groups[k].values())]
        if fulls:
            key = max(fulls, key=lambda k: k[2])  # the full group with the most batches
            ref_keys.add(key)
            reference[ds] = list(groups[key].values())
        if target is not None:
            targets[ds] = (float(target), "--target")
        elif ds in reference:
            recs = reference[ds]
            what = f"{recs[0].selector}'s final mean over {len(recs)} seed(s)"
            targets[ds] = (float(np.mean([r.top1 for r in recs])), what)
    ref_steps: dict[str, int | None] = {}
    for ds, recs in reference.items():
        if ds in targets:
            ref_steps[ds] = first_step_at([(s, m) for s, m, _, _ in mean_curve(recs, common=True)], targets[ds][0])

    ood_names = sorted({n for g in groups.values() for r in g.values() for n in r.ood})
    rows = []
    for (ds, budget, batches, name), g in groups.items():
        recs = [g[s] for s in sorted(g)]
        top1 = [r.top1 for r in recs]
        step = matched[ds]
        at: list[float | None] = [dict(r.curve).get(step) for r in recs] if step is not None else []
        tgt = targets.get(ds, (None, ""))[0]
        is_ref = (ds, budget, batches, name) in ref_keys
        btt: float | None = None
        reached = 0
        if tgt is not None:
            hits = [first_step_at(r.curve, tgt) for r in recs]
            reached = sum(h is not None for h in hits)
            if is_ref:
                ref = ref_steps.get(ds)
                btt = float(ref) if ref is not None else None
            elif reached == len(hits):
                btt = float(np.mean([h for h in hits if h is not None]))
        ref = ref_steps.get(ds)
        speedup = ref / btt if (ref is not None and btt) else None
        ood = {n: float(np.mean([r.ood[n] for r in recs if n in r.ood]))
               for n in ood_names if any(n in r.ood for r in recs)}
        uses = recs[-1].uses
        rows.append(
            Row(
                dataset=ds,
                selector=name,
                label_budget=budget,
                label_budget_requested=recs[0].label_budget_requested,
                batch_budget=batches,
                whole_pool=recs[0].whole_pool,
                seeds=[r.seed for r in recs],
                top1=top1,
                mean=float(np.mean(top1)),
                ci=t_halfwidth(top1),
                matched_step=step,
                matched_top1=float(np.mean([a for a in at if a is not None])) if at and None not in at else None,
                target=tgt,
                batches_to_target=btt,
                reached=reached,
                speedup=speedup,
                ood=ood,
                selection_seconds=float(np.mean([r.selection_seconds for r in recs])),
                selection_forward_batches=float(np.mean([r.selection_forward_batches for r in recs])),
                uses=uses,
                reference=is_ref,
                records=recs,
            )
        )
    rows.sort(key=lambda r: (r.dataset, r.label_budget, r.batch_budget, -r.mean, r.selector))
    return Board(rows, targets, matched, ref_steps, ood_names, notes)


# ---------------------------------------------------------------------------------------------
# rendering


def _budget_text(r: Row) -> str:
    if r.whole_pool:
        return f"all ({r.label_budget})"
    req = r.label_budget_requested
    return f"{r.label_budget} ({req})" if req and req != str(r.label_budget) else str(r.label_budget)


def _btt_text(r: Row) -> str:
    if r.target is None:
        return "-"
    if r.batches_to_target is not None:
        return f"{r.batches_to_target:.0f}" + (" (mean curve)" if r.reference else "")
    return f"not reached ({r.reached}/{r.n})"


def _f(v: float | None, digits: int = 2, suffix: str = "") -> str:
    return "-" if v is None else f"{v:.{digits}f}{suffix}"


def _cells(r: Row, ood_names: list[str]) -> list[str]:
    acc = f"{r.mean:.2f}" + (f" ± {r.ci:.2f}" if r.ci is not None else "")
    matched = f"{r.matched_top1:.2f} @{r.matched_step}" if r.matched_top1 is not None else "-"
    return [
        r.dataset,
        _budget_text(r),
        str(r.batch_budget),
        r.selector,
        ", ".join(r.uses) if r.uses else ("features" if r.uses is not None else "?"),
        str(r.n),
        acc,
        matched,
        _btt_text(r),
        _f(r.speedup, 2, "x"),
        *[_f(r.ood.get(n)) for n in ood_names],
        _f(r.selection_seconds),
        f"{r.selection_forward_batches:.0f}",
    ]


def headers(board: Board) -> list[str]:
    return [
        "dataset",
        "label budget",
        "batches",
        "selector",
        "uses",
        "n",
        "top-1 (mean ± 95% CI)",
        "top-1 @ matched batches",
        "batches to target",
        "speed-up vs full",
        *[f"ood {n}" for n in board.ood_names],
        "selection s",
        "selection fwd batches",
    ]


def footnotes(board: Board) -> list[str]:
    lines = []
    for ds in sorted(board.matched_steps):
        t = board.targets.get(ds)
        tt = f"target {t[0]:.2f}% ({t[1]})" if t else "no target (no full run; pass --target)"
        ms = board.matched_steps[ds]
        step = ms if ms is not None else "-"
        lines.append(f"{ds}: {tt}; matched batches: step {step} (the last step every run reached)")
    return lines + board.notes


def _best(board: Board) -> set[int]:
    """Row indices of the best mean per dataset x label budget x batch budget (cells of > 1 row)."""
    best: dict[tuple[str, int, int], int] = {}
    sizes: dict[tuple[str, int, int], int] = {}
    for i, r in enumerate(board.rows):
        key = (r.dataset, r.label_budget, r.batch_budget)
        sizes[key] = sizes.get(key, 0) + 1
        if key not in best or r.mean > board.rows[best[key]].mean:
            best[key] = i
    return {i for k, i in best.items() if sizes[k] > 1}


def to_markdown(board: Board) -> str:
    head = headers(board)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    best = _best(board)
    for i, r in enumerate(board.rows):
        cells = _cells(r, board.ood_names)
        if i in best:
            cells[6] = f"**{cells[6]}**"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + [""] + [f"- {n}" for n in footnotes(board)]) + "\n"


SHORT = {"label budget": "budget", "top-1 (mean ± 95% CI)": "top-1 ± 95% CI", "top-1 @ matched batches": "@ matched",
         "batches to target": "to target", "speed-up vs full": "speed-up", "selection s": "sel. s",
         "selection fwd batches": "sel. fwd"}


def to_table(board: Board) -> Table:
    """A rich table for the terminal: short headers, numbers never wrapped."""
    table = Table(title="vecaf-bench leaderboard", title_justify="left", caption="\n".join(footnotes(board)),
                  caption_justify="left", pad_edge=False)
    for h in headers(board):
        wraps = h in ("selector", "uses", "batches to target") or h.startswith("ood ")
        table.add_column(SHORT.get(h, h), overflow="fold", no_wrap=not wraps)
    best = _best(board)
    for i, r in enumerate(board.rows):
        cells = _cells(r, board.ood_names)
        if i in best:
            cells[6] = f"[bold green]{cells[6]}[/]"
        table.add_row(*cells)
    return table


def records_table(board: Board) -> tuple[list[str], list[list[Any]]]:
    """Machine-readable columns and rows (csv, json, the W&B table)."""
    cols = ["dataset", "selector", "label_budget", "label_budget_requested", "batch_budget", "n", "seeds",
            "mean_top1", "ci95", "matched_step", "matched_top1", "target", "batches_to_target", "reached",
            "speedup", *[f"ood_{n}" for n in board.ood_names], "selection_seconds", "selection_forward_batches",
            "uses", "reference"]
    rows = []
    for r in board.rows:
        rows.append([
            r.dataset, r.selector, r.label_budget, r.label_budget_requested, r.batch_budget, r.n,
            " ".join(map(str, r.seeds)), r.mean, r.ci, r.matched_step, r.matched_top1, r.target,
            r.batches_to_target, r.reached, r.speedup, *[r.ood.get(n) for n in board.ood_names],
            r.selection_seconds, r.selection_forward_batches,
            (" ".join(r.uses) or "features") if r.uses is not None else None, r.reference,
        ])
    return cols, rows


def to_csv(board: Board) -> str:
    cols, rows = records_table(board)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for row in rows:
        w.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


def to_json(board: Board) -> str:
    cols, rows = records_table(board)
    return json.dumps(
        {
            "targets": {ds: {"top1": t, "source": src} for ds, (t, src) in board.targets.items()},
            "matched_steps": board.matched_steps,
            "reference_batches_to_target": board.reference_steps,
            "notes": board.notes,
            "rows": [dict(zip(cols, row, strict=True)) for row in rows],
        },
        indent=2,
    ) + "\n"


def render(board: Board, fmt: str) -> str | Table:
    if fmt == "table":
        return to_table(board)
    if fmt == "markdown":
        return to_markdown(board)
    if fmt == "csv":
        return to_csv(board)
    if fmt == "json":
        return to_json(board)
    from .errors import did_you_mean

    raise UserError(f"--format '{fmt}' is unknown; use one of {', '.join(FORMATS)}.{did_you_mean(fmt, FORMATS)}")


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
        from .errors import did_you_mean

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
            config={"source": source, "targets": {ds: t for ds, (t, _) in board.targets.items()},
                    "matched_steps": board.matched_steps},
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

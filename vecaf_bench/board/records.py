"""The leaderboard's input: one Record per finished run, read from run folders or from W&B.

A Record keeps what the board's rules need and nothing it would have to guess later: the test
and validation curves as evaluated, the run's identity (dotted config key -> value) and the
compute it spent. Old summaries (before `identity`, `val`, `best` and `compute` existed) still
load: what they lack is left absent, or derived where the derivation is exact enough to state
(`Compute.derived`), and the board says so in a note.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import UserError
from ..identity import identity_fields

# ---------------------------------------------------------------------------------------------
# records: one finished run each


@dataclass
class Compute:
    """Images processed, per kind (None: unknown). `derived`: an old summary without `compute`,
    where train = steps x batch size and selection = forward batches x the evaluation batch size
    max(batch size, 64) (an upper bound: a pass's last batch may be partial)."""

    train_images: float | None = None
    selection_images: float | None = None
    feature_images: float | None = None
    feature_cached: bool | None = None
    eval_images: float | None = None
    derived: bool = False

    @property
    def train_select_images(self) -> float | None:
        if self.train_images is None or self.selection_images is None:
            return None
        return self.train_images + self.selection_images


@dataclass
class Record:
    selector: str
    dataset: str
    label_budget: int
    label_budget_requested: str
    batch_budget: int
    seed: int
    top1: float  # final test top-1
    curve: list[tuple[int, float]]  # test top-1 per evaluation step
    val_curve: list[tuple[int, float]] = field(default_factory=list)  # validation top-1 (empty: no val split)
    identity: dict[str, Any] = field(default_factory=dict)  # dotted config key -> value
    identity_source: str = "summary"  # summary | config.yaml | partial | wandb
    val: dict[str, Any] | None = None  # summary['val']: {size, fraction, seed, source}
    best: dict[str, Any] | None = None  # summary['best'] as recorded (the board recomputes it from the curves)
    batch_size: int | None = None
    steps: int | None = None
    compute: Compute = field(default_factory=Compute)
    ood: dict[str, float] = field(default_factory=dict)
    selection_seconds: float = 0.0
    selection_forward_batches: float = 0.0
    uses: list[str] | None = None
    pool_size: int | None = None
    whole_pool_flag: bool | None = None  # summary['capabilities']['whole_pool'], when recorded
    source: str = ""
    mtime: float = 0.0

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.identity.get("selector_options") or {})

    @property
    def label(self) -> str | None:
        v = self.identity.get("label")
        return None if v in (None, "") else str(v)

    @property
    def whole_pool(self) -> bool:
        if self.whole_pool_flag is not None:
            return self.whole_pool_flag
        return self.pool_size is not None and self.label_budget == self.pool_size

    @property
    def has_val(self) -> bool:
        return bool(self.val_curve)


def _ood_from_summary(s: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for g, v in (s.get("ood_groups") or {}).items():
        if isinstance(v, Mapping) and v.get("top1") is not None:
            out[g] = float(v["top1"])
    for n, v in (s.get("ood") or {}).items():
        if isinstance(v, Mapping) and not v.get("group") and v.get("top1") is not None:
            out[n] = float(v["top1"])
    return out


def _curve(points: Iterable[Mapping[str, Any]], step_key: str = "step", key: str = "top1") -> list[tuple[int, float]]:
    pts = {}
    for p in points:
        if p.get(step_key) is not None and p.get(key) is not None:
            pts[int(p[step_key])] = float(p[key])
    return sorted(pts.items())


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def compute_from_summary(s: Mapping[str, Any]) -> Compute:
    """summary['compute'], else what an old summary allows (see Compute)."""
    c = s.get("compute")
    if isinstance(c, Mapping):
        return Compute(_number(c.get("train_images")), _number(c.get("selection_images")),
                       _number(c.get("feature_images")),
                       c.get("feature_cached") if isinstance(c.get("feature_cached"), bool) else None,
                       _number(c.get("eval_images")))
    bs, steps, fwd = _number(s.get("batch_size")), _number(s.get("steps")), _number(s.get("selection_forward_batches"))
    train = steps * bs if steps is not None and bs is not None else None
    sel = 0.0 if fwd == 0 else (fwd * max(bs, 64.0) if fwd is not None and bs is not None else None)
    feats: Mapping[str, Any] = s["features"] if isinstance(s.get("features"), Mapping) else {}
    cached = feats.get("cached") if isinstance(feats.get("cached"), bool) else None
    return Compute(train, sel, 0.0 if cached else None, cached, None, derived=True)


def _partial_identity(s: Mapping[str, Any], options: Mapping[str, Any] | None) -> dict[str, Any]:
    """What an old summary says of its identity (the rest is absent)."""
    out: dict[str, Any] = {"selector": s.get("selector"), "selector_options": dict(options or {})}
    for key, name in (("rounds_requested", "rounds"), ("backbone", "backbone"), ("image_size", "image_size"),
                      ("batch_size", "batch_size")):
        if s.get(key) is not None:
            out[name] = s[key]
    return out


def identity_of(
    s: Mapping[str, Any], options: Mapping[str, Any] | None = None, config: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], str]:
    """The run's identity and where it came from: summary['identity'], else the identity fields of
    its config.yaml (over the summary's own fields), else the summary's fields alone."""
    if isinstance(s.get("identity"), Mapping):
        return dict(s["identity"]), "summary"
    partial = _partial_identity(s, options)
    if isinstance(config, Mapping) and config:
        return {**partial, **identity_fields(config)}, "config.yaml"
    return partial, "partial"


def record_from_summary(
    s: Mapping[str, Any], options: Mapping[str, Any] | None = None, source: str = "",
    config: Mapping[str, Any] | None = None,
) -> Record | None:
    """A finished run's summary.json as a Record; None for an unfinished one. OPTIONS and CONFIG
    (its config.yaml) fill in the identity of a summary written before `identity` existed."""
    if s.get("status") != "finished" or s.get("test_top1") is None:
        return None
    points = s.get("curve") or []
    curve = _curve(points)
    identity, where = identity_of(s, options, config)
    if "label" not in identity and s.get("label") not in (None, ""):
        identity["label"] = s["label"]  # the suite's row label, recorded beside an older identity
    caps: Mapping[str, Any] = s["capabilities"] if isinstance(s.get("capabilities"), Mapping) else {}
    return Record(
        selector=str(s["selector"]),
        dataset=str(s["dataset"]),
        label_budget=int(s["label_budget"]),
        label_budget_requested=str(s.get("label_budget_requested", s["label_budget"])),
        batch_budget=int(s["batch_budget"]),
        seed=int(s["seed"]),
        top1=float(s["test_top1"]),
        curve=curve or [(int(s.get("steps") or s["batch_budget"]), float(s["test_top1"]))],
        val_curve=_curve(points, key="val_top1"),
        identity=identity,
        identity_source=where,
        val=dict(s["val"]) if isinstance(s.get("val"), Mapping) else None,
        best=dict(s["best"]) if isinstance(s.get("best"), Mapping) else None,
        batch_size=int(s["batch_size"]) if s.get("batch_size") is not None else None,
        steps=int(s["steps"]) if s.get("steps") is not None else None,
        compute=compute_from_summary(s),
        ood=_ood_from_summary(s),
        selection_seconds=float(s.get("selection_seconds") or 0.0),
        selection_forward_batches=float(s.get("selection_forward_batches") or 0.0),
        uses=list(s["uses"]) if s.get("uses") is not None else None,
        pool_size=int(s["pool_size"]) if s.get("pool_size") is not None else None,
        whole_pool_flag=caps.get("whole_pool") if isinstance(caps.get("whole_pool"), bool) else None,
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
    from ..suite.grid import ATTEMPTS

    parts = d.relative_to(root).parts if d != root else ()
    return not any(p in (ATTEMPTS, "wandb", "submitit", "logs") or p.startswith(".") for p in parts)


def _read_config(path: Path) -> dict[str, Any]:
    """A run's config.yaml as a dict ({} when absent or unreadable)."""
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def scan_runs(root: str | Path) -> RunScan:
    """Every run folder under `root` (recursively): finished runs as records; damaged, failed,
    half-made and unfinished ones named (see RunScan.notes), never mixed into the results."""
    from ..suite.grid import read_run_folder

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
        config = _read_config(d / "config.yaml")
        options = config.get("selector_options") if isinstance(config.get("selector_options"), dict) else {}
        try:
            rec = record_from_summary(s, options, source=str(d), config=config)
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
    return "selector" in _read_config(path)


def load_records(root: str | Path) -> tuple[list[Record], int]:
    """Every finished run's record under `root` and how many run folders were left out (damaged,
    failed, half-made or unfinished: `scan_runs` names them)."""
    scan = scan_runs(root)
    return scan.records, sum(len(v) for v in scan.left_out.values())


# ---- W&B -------------------------------------------------------------------------------------

WANDB_CONFIG_EXTRAS = ("label_budget_count", "pool_size")  # what the wandb tracker adds to the run config
WANDB_VAL_KEYS = ("val/top1", "test/val_top1")  # the tracker logs val/top1; test/val_top1 is what it logged before


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
    summary.json gives; None for a run that did not finish or is not a vecaf-bench run. The
    identity is the W&B config's identity fields; validation curves only where the history has them."""
    if summary.get("status") != "finished":
        return None
    selector = summary.get("selector") or config.get("selector")
    top1 = summary.get("test_top1", summary.get("test/top1"))
    if selector is None or top1 is None:
        return None
    curve = _curve(history, "train/step", "test/top1")
    val_curve: list[tuple[int, float]] = []
    for key in WANDB_VAL_KEYS:
        val_curve = val_curve or _curve(history, "train/step", key)
    uses = summary.get("uses")
    if isinstance(uses, str):
        uses = [u for u in uses.replace(",", " ").split() if u]
    batch_budget = int(summary.get("batch_budget") or config["batch_budget"])
    identity = identity_fields({k: v for k, v in config.items()
                                if k not in WANDB_CONFIG_EXTRAS and not str(k).startswith("_")})
    identity.setdefault("selector", selector)
    identity.setdefault("selector_options", {})
    return Record(
        selector=str(selector),
        dataset=str(summary.get("dataset") or config.get("dataset")),
        label_budget=int(summary.get("label_budget") or config.get("label_budget_count") or 0),
        label_budget_requested=str(summary.get("label_budget_requested") or config.get("label_budget")),
        batch_budget=batch_budget,
        seed=int(summary.get("seed", config.get("seed", 0))),
        top1=float(top1),
        curve=curve or [(int(summary.get("steps") or batch_budget), float(top1))],
        val_curve=val_curve,
        identity=identity,
        identity_source="wandb",
        batch_size=int(summary["batch_size"]) if summary.get("batch_size") is not None else None,
        steps=int(summary["steps"]) if summary.get("steps") is not None else None,
        compute=compute_from_summary(summary),
        ood=_ood_from_wandb(summary),
        selection_seconds=float(summary.get("selection_seconds") or 0.0),
        selection_forward_batches=float(summary.get("selection_forward_batches") or 0.0),
        uses=list(uses) if uses is not None else None,
        pool_size=int(summary["pool_size"]) if summary.get("pool_size") is not None else None,
        source=source,
    )


def _plain(value: Any) -> Any:
    """A nested W&B summary value (wandb's own dict-like class) as a plain dict."""
    return {k: value[k] for k in value.keys()} if hasattr(value, "keys") and not isinstance(value, Mapping) else value


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
            summary = {k: _plain(run.summary[k]) for k in run.summary.keys()}
            history = list(run.scan_history(keys=["train/step", "test/top1"]))
            for key in WANDB_VAL_KEYS:  # a second scan: rows of runs without a validation split lack the key
                history += list(run.scan_history(keys=["train/step", key]))
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
        from ..pluginmanager import PluginHost

        host = PluginHost(plugins)
    except Exception:
        return
    known = {}
    for name in missing:
        if name in host.selectors():
            factory = host.selectors().get(name).factory
            caps = getattr(factory, "capabilities", None)  # API 1.0; before it, a loose `uses`
            known[name] = sorted(getattr(caps, "uses", None) or getattr(factory, "uses", ()) or ())
    for r in records:
        if r.uses is None and r.selector in known:
            r.uses = known[r.selector]

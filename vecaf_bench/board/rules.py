"""Leaderboard: every finished run under a folder (or in a W&B project), grouped and compared.

The rules, so that every number on the board can be checked by hand from the summary.json files
(the statistics themselves are in `vecaf_bench.board.stats`, each naming its scipy call):

Rows. Only runs whose summary says `status: finished` count. A run's *setting* is what it is
compared under: dataset, label budget (images, as resolved), batch budget, and the protocol keys
batch_size, eval_every, ood_eval_every, test_fraction, val_fraction, on_corrupt, shifts,
shift_seed. Its *method identity* is every other key of summary['identity'] except the seed:
selector, selector_options, rounds, cold_start, recipe, recipe_options, every train.* key,
backbone, weights, image_size, text_encoder, captions, text_domain, label (a suite's row label),
and any key added later. A row is one (setting, method identity); its seeds are its samples, and a
seed found twice counts once (the newest summary). Two configs of one selector are always two
rows. A key an old summary lacks is absent (as is a key set to None or {}), never an error; an old
summary without `identity` takes it from its config.yaml, else from its own fields (selector,
options, rounds, backbone, image size, batch size), and the board says so.

Method key (the name shown). The row's `label` when it has one; else the selector's name, its
selector_options as `{k=v}`, its recipe and recipe_options as `[recipe k=v]` when they differ from
the common ones, and, as `{k=v}`, every other identity key whose value differs from the most
common value among the dataset's rows (a key whose values tie has no common value and is shown
on every row that sets it), e.g. `vecaf {rounds=3}`, `random [linear-probe]`. Rows that would
still share a name in one setting get every key in which they differ appended.

Seeds and incomplete rows. The expected seeds of a setting are the union of the seeds of its rows
(for a whole-pool `full` row, of the whole-pool rows at its dataset and batch budget: its own
setting). A row missing any is incomplete: shown as "k/n seeds" beside its numbers, which are over
the seeds present, and never bolded.

Intervals. Mean +- the 95% half-width t(0.975, n-1) * s / sqrt(n) over seeds (s: the sample
standard deviation); one seed gives no interval.

Validation. The decision curve of a run is its validation top-1 per evaluation (`val_top1` in
summary['curve']). Targets, crossings and "best" are read off it; the test split is only reported.
A dataset where any run lacks a validation curve (val_fraction 0, an old run, W&B) is read off the
test curve for every run on it, and the board says "no validation split: targets read off the test
split".

Final and best. Final: the test top-1 at the last evaluation. Test @ best val: per seed, the
evaluation with the highest validation top-1 (the first of ties), and the test top-1 there (what
early stopping on the validation split would report). Both as mean +- CI over seeds.

Target. `--target` (percent, on the decision curve), else `--target-fraction` F (default 0.95)
times the mean over seeds of the best decision top-1 of `full` (the whole-pool rows) on the
dataset at the longest batch budget `full` ran there; several whole-pool rows at that budget: the
one with the highest such mean. It does not depend on a row's batch budget. No full run and no
--target: no target on that dataset. The board states it, e.g. "target 92.30 = 0.95 x full's best
val top-1 at 300 batches (97.16, mean of 3 seeds)".

Batches to target. Per seed: the first crossing of the decision curve with linear interpolation
between the two evaluations around it (s0 + (target - a0) / (a1 - a0) * (s1 - s0)); a curve whose
first evaluation already reaches the target crosses at that evaluation's step. `full` is read by
the same rule. The row's value: mean +- CI over seeds when every seed reached the target, else
"not reached (k/n)". In images: each seed's crossing x batch size, then the mean.

Speed-up over full: full's mean batches to target / the row's, where "full" is the whole-pool row
at the row's own dataset and batch budget when full ran there (the same schedule length: the
fair comparison under a cosine schedule), else the row that set the target (the longest budget);
among several, the one with the same recipe side (see Paired), else the most seeds. The interval
is the delta method on the log ratio (stats.ratio_ci). No speed-up when either side did
not reach the target on every seed.

Paired statistics. For every row, the paired difference (row - other) of final test top-1 and of
test @ best val, over the seeds both have, against `random` and against `--reference` (default
activeft) in the same setting: mean, the paired 95% t interval (scipy.stats.ttest_rel, i.e.
mean +- t(0.975, n-1) * sd / sqrt(n) of the differences) and the two-sided Wilcoxon signed-rank p
(scipy.stats.wilcoxon with its defaults; None with < 2 shared seeds or all-zero differences; with
n seeds the smallest exact p is 2 / 2^n, 0.0625 for 5, so p < 0.05 needs at least 6 seeds). The
other row: among the rows of that selector whose identity equals the row's on the recipe side
(every identity key but selector, selector_options, label, rounds, cold_start, text_encoder,
captions, text_domain, selection), else among all rows of that selector, the one with the most seeds, then
the fewest identity keys set (the plain config), then the first name. When that is the row
itself there is no comparison (so `random` has no "vs random", and `activeft {tau=0.1}` meets
plain `activeft`). Differences with no spread over seeds have no interval. The markdown board
marks with `*` a difference whose interval excludes 0.

AUBC. For a method identity with >= 2 label budgets in one dataset x batch budget x setting: per
seed present at every budget, the trapezoid area under final test top-1 vs label budget (images)
divided by the budget range (the curve's mean height), then mean +- CI over those seeds.

Compute. "images (train+select)": training image-passes plus selection forward images, and
"feature images" (feature extraction; 0 when the cache was reused), each the mean over seeds,
from summary['compute']. An old summary without it: train = steps x batch size, selection = forward
batches x max(batch size, 64) (an upper bound), features 0 if cached; "?" where unknown.

OOD: per OOD name (a group mean such as `corruption`, or a split outside any group), the mean over
seeds of the final top-1. Selection seconds: mean over seeds. `uses`: what the selector read beside
the pool features (labels, model, text), from the summary.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import UserError
from . import stats as bs
from .records import (  # noqa: F401  (re-exported: the leaderboard's public names)
    Compute,
    Record,
    RunScan,
    compute_from_summary,
    fill_uses,
    load_records,
    record_from_summary,
    record_from_wandb,
    records_from_wandb,
    scan_runs,
)
from .stats import Paired, mean_curve, t_halfwidth  # noqa: F401

DEFAULT_TARGET_FRACTION = 0.95
DEFAULT_REFERENCE = "activeft"
RANDOM = "random"

#: identity keys of the setting (the comparison), beside dataset, label budget and batch budget
SETTING_KEYS = ("batch_size", "eval_every", "ood_eval_every", "test_fraction", "val_fraction", "on_corrupt",
                "shifts", "shift_seed")
NOT_METHOD = frozenset({"seed", "dataset", "label_budget", "batch_budget", *SETTING_KEYS})
#: identity keys of how a method picks; the rest (recipe, train.*, backbone, ...) is its recipe side
SELECTOR_SIDE = frozenset({"selector", "selector_options", "label", "rounds", "cold_start", "text_encoder",
                           "captions", "text_domain", "selection"})


# ---------------------------------------------------------------------------------------------
# identities


def _key(d: Mapping[str, Any]) -> str:
    return json.dumps(dict(d), sort_keys=True, default=str)


def _present(v: Any) -> bool:
    return v is not None and v != {}


def method_identity(r: Record) -> dict[str, Any]:
    """The run's method identity: every identity key outside the setting and the seed (None or {}
    counts as absent, like a key an old summary lacks)."""
    out = {k: v for k, v in r.identity.items() if k not in NOT_METHOD and _present(v)}
    out["selector"] = r.selector
    return out


def setting_of(r: Record) -> dict[str, Any]:
    """The run's setting: dataset, resolved label budget, batch budget and the protocol keys."""
    out: dict[str, Any] = {"dataset": r.dataset, "label_budget": r.label_budget, "batch_budget": r.batch_budget}
    out.update({k: r.identity[k] for k in SETTING_KEYS if _present(r.identity.get(k))})
    if "batch_size" not in out and r.batch_size is not None:
        out["batch_size"] = r.batch_size
    return out


def recipe_side(method: Mapping[str, Any]) -> str:
    return _key({k: v for k, v in method.items() if k not in SELECTOR_SIDE})


# ---------------------------------------------------------------------------------------------
# the board


@dataclass
class Target:
    value: float
    text: str  # the sentence the board states
    curve: str  # val | test: what the target is read on
    fraction: float | None = None
    reference: str | None = None  # the method key of the full row it came from
    reference_batches: int | None = None
    reference_mean: float | None = None  # that row's mean best top-1


@dataclass
class Comparison:
    """A row against another (random or the reference) over their shared seeds."""

    against: str  # "random" | "reference"
    name: str  # the other row's method key
    final: Paired | None
    best: Paired | None


@dataclass
class Row:
    dataset: str
    selector: str
    name: str  # readable method key
    label_budget: int
    label_budget_requested: str
    batch_budget: int
    batch_size: int | None
    setting: dict[str, Any]
    method: dict[str, Any]
    whole_pool: bool
    records: list[Record] = field(repr=False)
    expected_seeds: list[int] = field(default_factory=list)
    curve_source: str = "test"
    setting_note: str = ""  # the setting keys that set it apart from the dataset's other settings
    # final and best
    final: dict[int, float] = field(default_factory=dict)
    best_test: dict[int, float] = field(default_factory=dict)
    best_val: dict[int, float] = field(default_factory=dict)
    best_step: dict[int, int] = field(default_factory=dict)
    mean: float = 0.0
    ci: float | None = None
    best_mean: float | None = None
    best_ci: float | None = None
    best_final: bool = False  # bold: the highest final mean of its setting (complete rows only)
    best_at_best: bool = False
    # target
    target: float | None = None
    crossings: dict[int, float | None] = field(default_factory=dict)
    batches_to_target: float | None = None
    btt_ci: float | None = None
    images_to_target: float | None = None
    speedup: float | None = None
    speedup_low: float | None = None
    speedup_high: float | None = None
    speedup_reference: str | None = None  # "full @150 batches"
    reference: bool = False  # this row set its dataset's target
    vs: dict[str, Comparison] = field(default_factory=dict)
    # compute and the rest
    train_select_images: float | None = None
    train_images: float | None = None
    selection_images: float | None = None
    feature_images: float | None = None
    feature_cached: bool | None = None
    ood: dict[str, float] = field(default_factory=dict)
    selection_seconds: float = 0.0
    selection_forward_batches: float = 0.0
    uses: list[str] | None = None
    recipe_text: str = ""  # the name's " [recipe k=v]" part ("" where every row shares the recipe)

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.records]

    @property
    def n(self) -> int:
        return len(self.records)

    @property
    def top1(self) -> list[float]:
        return [r.top1 for r in self.records]

    @property
    def incomplete(self) -> bool:
        return self.n < len(self.expected_seeds)

    @property
    def reached(self) -> int:
        return sum(c is not None for c in self.crossings.values())

    @property
    def setting_key(self) -> str:
        return _key(self.setting)

    @property
    def method_key(self) -> str:
        return _key(self.method)

    def decision_curves(self) -> list[list[tuple[int, float]]]:
        return [r.val_curve if self.curve_source == "val" else r.curve for r in self.records]


@dataclass
class AubcRow:
    dataset: str
    batch_budget: int
    name: str
    budgets: list[int]
    seeds: list[int]  # seeds present at every budget: the samples
    expected_seeds: list[int]  # seeds present at any budget
    per_seed: dict[int, float]
    mean: float
    ci: float | None

    @property
    def incomplete(self) -> bool:
        return len(self.seeds) < len(self.expected_seeds)


@dataclass
class Board:
    rows: list[Row]
    targets: dict[str, Target] = field(default_factory=dict)
    curve_sources: dict[str, str] = field(default_factory=dict)  # dataset -> val | test
    aubc: list[AubcRow] = field(default_factory=list)
    ood_names: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reference: str = DEFAULT_REFERENCE
    target_fraction: float = DEFAULT_TARGET_FRACTION


def build_board(
    records: Sequence[Record],
    target: float | None = None,
    target_fraction: float = DEFAULT_TARGET_FRACTION,
    reference: str = DEFAULT_REFERENCE,
) -> Board:
    """Groups the records into rows and computes every column (the rules are in the module docstring)."""
    if not 0 < target_fraction <= 1:
        raise UserError(f"--target-fraction must be in (0, 1], got {target_fraction}.")
    notes: list[str] = []
    groups, dupes = _group(records)
    if dupes:
        notes.append(f"{dupes} run(s) repeated a seed of their row; the newest summary of each seed was used.")
    sources = _curve_sources(records)
    rows = [_row(list(g.values()), sources[next(iter(g.values())).dataset]) for g in groups.values()]
    _expected_seeds(rows)
    _name_rows(rows)
    targets = _targets(rows, target, target_fraction, sources)
    for r in rows:
        _to_target(r, targets.get(r.dataset))
    for r in rows:
        _speedup(r, rows, targets.get(r.dataset))
        _paired(r, rows, reference)
    _mark_best(rows)
    ood_names = sorted({n for r in rows for rec in r.records for n in rec.ood})
    rows.sort(key=lambda r: (r.dataset, r.label_budget, r.batch_budget, r.setting_note, r.whole_pool, -r.mean,
                             r.name))
    board = Board(rows, targets, sources, _aubc(rows), ood_names, notes, reference, target_fraction)
    board.notes.extend(_notes(board, records))
    return board


def _group(records: Sequence[Record]) -> tuple[dict[tuple[str, str], dict[int, Record]], int]:
    groups: dict[tuple[str, str], dict[int, Record]] = {}
    dupes = 0
    for r in sorted(records, key=lambda r: r.mtime):
        g = groups.setdefault((_key(setting_of(r)), _key(method_identity(r))), {})
        dupes += r.seed in g
        g[r.seed] = r  # the newest summary of a seed wins
    return {k: dict(sorted(g.items())) for k, g in groups.items()}, dupes


def _curve_sources(records: Sequence[Record]) -> dict[str, str]:
    """val when every run on the dataset has a validation curve, else test (for all of them)."""
    out: dict[str, str] = {}
    for r in records:
        out[r.dataset] = "val" if out.get(r.dataset, "val") == "val" and r.has_val else "test"
    return out


def _mean(values: Sequence[float | None]) -> float | None:
    known = [float(v) for v in values if v is not None]
    return float(np.mean(known)) if values and len(known) == len(values) else None


def _row(recs: list[Record], source: str) -> Row:
    first = recs[-1]
    row = Row(dataset=first.dataset, selector=first.selector, name=first.selector, label_budget=first.label_budget,
              label_budget_requested=recs[0].label_budget_requested, batch_budget=first.batch_budget,
              batch_size=first.batch_size, setting=setting_of(first), method=method_identity(first),
              whole_pool=first.whole_pool, records=recs, curve_source=source)
    for r in recs:
        row.final[r.seed] = r.top1
        bp = bs.best_point(r.val_curve if source == "val" else r.curve, r.curve)
        if bp is not None:
            row.best_step[r.seed], row.best_val[r.seed] = bp[0], bp[1]
            if bp[2] is not None:
                row.best_test[r.seed] = bp[2]
    row.mean, row.ci = bs.mean_ci(list(row.final.values()))  # type: ignore[assignment]
    if len(row.best_test) == row.n:
        row.best_mean, row.best_ci = bs.mean_ci(list(row.best_test.values()))
    c = [r.compute for r in recs]
    row.train_images = _mean([x.train_images for x in c])
    row.selection_images = _mean([x.selection_images for x in c])
    row.train_select_images = _mean([x.train_select_images for x in c])
    row.feature_images = _mean([x.feature_images for x in c])
    row.feature_cached = all(x.feature_cached for x in c) if all(x.feature_cached is not None for x in c) else None
    row.ood = {n: float(np.mean([r.ood[n] for r in recs if n in r.ood]))
               for n in sorted({n for r in recs for n in r.ood})}
    row.selection_seconds = float(np.mean([r.selection_seconds for r in recs]))
    row.selection_forward_batches = float(np.mean([r.selection_forward_batches for r in recs]))
    row.uses = first.uses
    return row


def _expected_seeds(rows: list[Row]) -> None:
    by_setting: dict[str, set[int]] = {}
    for r in rows:
        by_setting.setdefault(r.setting_key, set()).update(r.seeds)
    for r in rows:
        r.expected_seeds = sorted(by_setting[r.setting_key])


# ---- names -----------------------------------------------------------------------------------


def _value_text(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True, default=str, separators=(",", ":"))
    return str(v)


_ABSENT = "\0absent"


def _common(maps: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """key -> the JSON of its strictly most common value over MAPS (absent counts as a value); a
    key whose top values tie has no common value."""
    out = {}
    for k in sorted({k for m in maps for k in m}):
        counts = Counter(_key({"v": m[k]}) if k in m else _ABSENT for m in maps).most_common()
        if len(counts) == 1 or counts[0][1] > counts[1][1]:
            out[k] = counts[0][0]
    return out


def _parts(method: Mapping[str, Any], common: Mapping[str, str], old: bool) -> list[str]:
    """The `k=v` parts of a method key: selector options, then keys off the common value; a key
    the row lacks is `k unset` (an old summary without `identity`: one 'identity: partial')."""
    parts = [f"{k}={_value_text(v)}" for k, v in sorted((method.get("selector_options") or {}).items())]
    unset = []
    for k in sorted(set(method) | set(common)):
        if k in ("selector", "selector_options", "label") or (k in ("recipe", "recipe_options") and k in method):
            continue  # the recipe, when set, is shown in brackets
        mine = _key({"v": method[k]}) if k in method else _ABSENT
        if common.get(k, _ABSENT) == mine:
            continue
        if k in method:
            parts.append(f"{k}={_value_text(method[k])}")
        else:
            unset.append(f"{k} unset")
    if unset:
        parts += ["identity: partial"] if old else unset
    return parts


def _recipe_text(method: Mapping[str, Any], common: Mapping[str, str]) -> str:
    """' [recipe k=v]' when the recipe or its options differ from the common ones, else ''."""
    recipe, options = method.get("recipe"), method.get("recipe_options") or {}
    same = all(common.get(k, _ABSENT) == (_key({"v": method[k]}) if k in method else _ABSENT)
               for k in ("recipe", "recipe_options"))
    if same or (recipe is None and not options):
        return ""
    opts = " ".join(f"{k}={_value_text(v)}" for k, v in sorted(options.items()))
    return f" [{recipe or '?'}{' ' + opts if opts else ''}]"


def _name_rows(rows: list[Row]) -> None:
    """Each row's readable method key (and setting note), unique within its setting."""
    for ds in {r.dataset for r in rows}:
        mine = [r for r in rows if r.dataset == ds]
        common = _common([r.method for r in mine])
        for r in mine:
            r.recipe_text = _recipe_text(r.method, common)
            label = r.records[-1].label
            if label:
                r.name = label
                continue
            parts = _parts(r.method, common, old=any(x.identity_source != "summary" for x in r.records))
            r.name = r.selector + r.recipe_text + (f" {{{', '.join(parts)}}}" if parts else "")
        setting_common = _common([{k: v for k, v in r.setting.items() if k in SETTING_KEYS} for r in mine])
        for r in mine:
            diff = [f"{k}={_value_text(v)}" for k, v in sorted(r.setting.items())
                    if k in SETTING_KEYS and setting_common.get(k) != _key({"v": v})]
            r.setting_note = f"{{{', '.join(diff)}}}" if diff else ""
    _disambiguate(rows)


def _disambiguate(rows: list[Row]) -> None:
    clash: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        clash.setdefault((r.setting_key, r.name), []).append(r)
    for same in clash.values():
        if len(same) < 2:
            continue
        keys = sorted({k for r in same for k in r.method})
        differ = [k for k in keys if len({_key({"v": r.method.get(k, _ABSENT)}) for r in same}) > 1]
        for r in same:
            r.name += " {" + ", ".join(f"{k}={_value_text(r.method.get(k, '-'))}" for k in differ) + "}"


# ---- target, crossings, speed-up ---------------------------------------------------------------


def _targets(rows: list[Row], target: float | None, fraction: float, sources: Mapping[str, str]) -> dict[str, Target]:
    out: dict[str, Target] = {}
    for ds in sorted({r.dataset for r in rows}):
        curve = sources[ds]
        if target is not None:
            out[ds] = Target(float(target), f"target {float(target):.2f} (--target, on the {curve} top-1)", curve)
            continue
        ref = _longest_full(rows, ds)
        if ref is None:
            continue
        mean = float(np.mean(list(ref.best_val.values())))
        ref.reference = True
        text = (f"target {fraction * mean:.2f} = {fraction:g} x {ref.name}'s best {curve} top-1 at {ref.batch_budget} "
                f"batches ({mean:.2f}, mean of {len(ref.best_val)} seed(s))")
        out[ds] = Target(fraction * mean, text, curve, fraction, ref.name, ref.batch_budget, mean)
    return out


def _longest_full(rows: Sequence[Row], dataset: str) -> Row | None:
    """The whole-pool row of DATASET at the longest batch budget full ran there (several: the one
    with the highest mean best decision top-1)."""
    fulls = [r for r in rows if r.dataset == dataset and r.whole_pool and r.best_val]
    if not fulls:
        return None
    longest = max(r.batch_budget for r in fulls)
    return max((r for r in fulls if r.batch_budget == longest),
               key=lambda r: (float(np.mean(list(r.best_val.values()))), r.n, r.name))


def _to_target(r: Row, target: Target | None) -> None:
    if target is None:
        return
    r.target = target.value
    r.crossings = {rec.seed: bs.first_crossing(c, target.value) for rec, c in zip(r.records, r.decision_curves(),
                                                                               strict=True)}
    if r.reached == r.n:
        hits = [float(c) for c in r.crossings.values() if c is not None]
        r.batches_to_target, r.btt_ci = bs.mean_ci(hits)
        if r.batch_size is not None:
            r.images_to_target = float(np.mean(hits)) * r.batch_size


def _counterpart(r: Row, candidates: Sequence[Row]) -> Row | None:
    """The canonical candidate for R: among those with R's recipe side (else among all), the most
    seeds, then the fewest identity keys set (the plain config), then the name. None when that is
    R itself: a row is never compared with itself, and every other row meets the same one."""
    if not candidates:
        return None
    mine = recipe_side(r.method)
    pool = [c for c in candidates if recipe_side(c.method) == mine] or list(candidates)
    best = min(pool, key=lambda c: (-c.n, len(c.method), c.name))
    return None if best is r else best


def _full_for(r: Row, rows: Sequence[Row]) -> Row | None:
    if r.whole_pool:
        return r
    fulls = [f for f in rows if f.whole_pool and f.dataset == r.dataset and f.batch_budget == r.batch_budget]
    if fulls:
        return _counterpart(r, fulls)
    return _longest_full(rows, r.dataset)


def _speedup(r: Row, rows: Sequence[Row], target: Target | None) -> None:
    if target is None:
        return
    full = _full_for(r, rows)
    if full is None:
        return
    r.speedup_reference = f"{full.name} @{full.batch_budget} batches"
    if full.batches_to_target is None or r.batches_to_target is None:
        return
    if full is r:
        r.speedup = 1.0
        return
    num = [float(c) for c in full.crossings.values() if c is not None]
    den = [float(c) for c in r.crossings.values() if c is not None]
    r.speedup, r.speedup_low, r.speedup_high = bs.ratio_ci(num, den)


# ---- paired, best, AUBC ------------------------------------------------------------------------


def _paired(r: Row, rows: Sequence[Row], reference: str) -> None:
    same_setting = [c for c in rows if c.setting_key == r.setting_key]
    for role, selector in (("random", RANDOM), ("reference", reference)):
        other = _counterpart(r, [c for c in same_setting if c.selector == selector])
        if other is None:
            continue
        r.vs[role] = Comparison(role, other.name, bs.paired_difference(r.final, other.final),
                                bs.paired_difference(r.best_test, other.best_test))


def _mark_best(rows: Sequence[Row]) -> None:
    """Bold the highest final mean and the highest test @ best val mean of each setting, among its
    complete rows, where there are at least two."""
    by_setting: dict[str, list[Row]] = {}
    for r in rows:
        if not r.incomplete:
            by_setting.setdefault(r.setting_key, []).append(r)
    for group in by_setting.values():
        if len(group) < 2:
            continue
        top = max(r.mean for r in group)
        for r in group:
            r.best_final = r.mean == top
        bests = [r.best_mean for r in group if r.best_mean is not None]
        if len(bests) >= 2:
            for r in group:
                r.best_at_best = r.best_mean == max(bests)


def _aubc(rows: Sequence[Row]) -> list[AubcRow]:
    groups: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        if r.whole_pool:
            continue
        rest = {k: v for k, v in r.setting.items() if k != "label_budget"}
        groups.setdefault((_key(rest), r.method_key), []).append(r)
    out = []
    for members in groups.values():
        budgets = sorted({m.label_budget for m in members})
        if len(budgets) < 2:
            continue
        members.sort(key=lambda m: m.label_budget)
        seeds = sorted(set.intersection(*(set(m.seeds) for m in members)))
        expected = sorted(set.union(*(set(m.seeds) for m in members)))
        per_seed = {s: bs.aubc([m.label_budget for m in members], [m.final[s] for m in members]) for s in seeds}
        mean, ci = bs.mean_ci(list(per_seed.values()))
        if mean is None:
            continue
        first = members[0]
        out.append(AubcRow(first.dataset, first.batch_budget, first.name, budgets, seeds, expected, per_seed, mean,
                           ci))
    out.sort(key=lambda a: (a.dataset, a.batch_budget, -a.mean, a.name))
    return out


# ---- notes -------------------------------------------------------------------------------------


def _notes(board: Board, records: Sequence[Record]) -> list[str]:
    notes = []
    for ds, src in sorted(board.curve_sources.items()):
        if src == "test":
            lacking = sum(1 for r in records if r.dataset == ds and not r.has_val)
            total = sum(1 for r in records if r.dataset == ds)
            notes.append(f"{ds}: no validation split: targets read off the test split ({lacking} of {total} run(s) "
                         "have no validation curve, so crossings and 'best' of every run on it use the test curve).")
    incomplete = [r for r in board.rows if r.incomplete]
    if incomplete:
        notes.append(f"{len(incomplete)} row(s) miss seeds of their setting (shown as 'k/n seeds'): their numbers are "
                     "over the seeds present, and they are never bolded.")
    derived = sum(r.compute.derived for r in records)
    if derived:
        notes.append(f"{derived} run(s) predate summary 'compute': train images = steps x batch size, selection "
                     "images <= forward batches x max(batch size, 64); '?' where even that is unknown.")
    old = Counter(r.identity_source for r in records if r.identity_source in ("config.yaml", "partial"))
    if old:
        where = " and ".join(f"{n} from {'config.yaml' if k == 'config.yaml' else 'their own fields'}"
                             for k, n in sorted(old.items()))
        notes.append(f"{sum(old.values())} run(s) predate summary 'identity' ({where}): keys they lack count as "
                     "absent, so they may form rows of their own.")
    if any(r.identity_source == "wandb" for r in records):
        notes.append("read from W&B: the method identity is each run's W&B config, and W&B keeps no summary "
                     "'val'/'best'/'compute' (validation curves only where the history has them).")
    return notes


from .render import (  # noqa: E402,F401  (re-exported; render needs the classes above)
    FORMATS,
    check_format,
    headers,
    log_to_wandb,
    records_table,
    render,
    to_csv,
    to_json,
    to_markdown,
    to_table,
)

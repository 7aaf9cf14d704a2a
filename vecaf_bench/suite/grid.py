"""Suites: a benchmark is many runs (selectors x datasets x label budgets x batch budgets x seeds),
each under the same matched budgets, and each in a folder of its own that a re-run finds again.

A suite YAML (see `benchmarks/*.yaml`)::

    name: smoke                  # required: [A-Za-z0-9._-]+; the folder <out>/<name>/ and the W&B group
    description: ...             # optional, free text
    base:                        # optional: any run config key (as in `vecaf-bench run --config`), shared
      backbone: timm:tf_efficientnet_lite0
      batch_size: 32
      train: {lr: 0.02}          # nested or dotted (train.lr) keys, as in a config file
      out: runs                  # default results folder (--out overrides it)
    selectors:                   # required: names, or mappings
      - random
      - name: vecaf
        label: vecaf-r3          # optional: the name in run ids (needed when a selector is listed twice)
        rounds: 3                # any run config key that is the selector's own business
        selector_options: {iterations: 100}
    datasets:                    # required: names (or folders), or mappings
      - mnist
      - name: imagenet
        label_budgets: [1%, 5%]  # optional per dataset: replaces the suite's label_budgets
        batch_budgets: [10000]   # optional per dataset: replaces the suite's batch_budgets
        seeds: [0, 1, 2]         # optional per dataset
        shifts: [domain:imagenet-r]   # optional per dataset: OOD splits of every run on it
        data_root: /data         # any run config key that holds for every run on this dataset
    label_budgets: [2.5%]        # required (unless every dataset gives its own): counts or fractions
    seeds: [0, 1, 2]             # required (unless every dataset gives its own)
    batch_budgets: [150]         # optional: default base.batch_budget, else the run default (150)
    shifts: [corruption:fog:3]   # optional: a list for every dataset, or {dataset: [shifts]}
    recipes: [finetune, linear-probe]   # optional: the finetuning recipe as a grid axis (names, or
                                 # - name: lp-ft / recipe_options: {probe_fraction: 0.3}); run ids then
                                 # end in -<recipe>-s<seed>. Without it every run uses base's recipe.
    backbones:                   # optional: the backbone as a grid axis (specs, or mappings with
      - timm:tf_efficientnet_lite0   # weights, image_size and label); run ids then hold -<label>.
      - {name: timm:resnet18, weights: none, image_size: 64, label: r18-scratch}

A fixed selection (a picks file `vecaf-bench select` wrote, or a run's selected.json) is a
selector entry named `selection` with the file under `selection:`; with a `backbones` axis, the
same picks are evaluated with every backbone (portable selections)::

    selectors:
      - random
      - {name: selection, label: activeft-picks, selection: picks.csv}

A selector that takes the whole pool (`full`, the reference curve) runs once per dataset x batch
budget x recipe x seed, not once per label budget. Every run's config goes through the same validation as
`vecaf-bench run --config`, so an unknown key gets the same message (with the closest valid key).

Matching is checked before anything runs: within a cell (dataset x label budget x batch budget,
plus the whole-pool runs of that dataset x batch budget) every run must agree on `MATCHED` (backbone,
weights, image size, batch size, the whole `train.*` recipe, batch budget, evaluation steps,
shifts, the data) and every selector must see the same seeds. A per-selector override of such a
key is refused, naming the key and the runs that differ: a comparison that is not matched is not
a comparison.

Run ids are deterministic, `<suite>-<dataset>-<budget>-b<batches>-<selector>-s<seed>`, so a
re-run of the suite finds each run's folder (`read_run_folder`): finished (summary.json says so) ->
skipped, nothing recomputed; interrupted (checkpoint.pt) -> resumed; failed (summary.json says so,
with its error), damaged (a summary.json that cannot be read), half-made (a config.yaml and nothing
else) or stopped without a checkpoint -> named in the plan, moved to `<suite>/.attempts/` and
started afresh. A folder whose config.yaml differs from the suite's
(someone edited the YAML) is refused rather than silently reused. The run folder name is the
config key `run_name`, so a run started as `vecaf-bench run --config <resolved yaml>` (parallel
and submitit executors) lands in the same folder as an in-process one.

All runs share the feature cache, and the first run of each feature group (dataset, backbone,
weights, image size) runs before the others of its group start, so pool features are computed
once even when runs go in parallel. `<out>/<suite>/suite.json` holds the expanded grid and each
run's status; it is rewritten atomically whenever a status changes. This module reads, expands,
checks and plans a suite; `suite.execute` runs it.

`--set KEY=VALUE` applies to every run, after the base, dataset and selector entries (an error
names `--set` as the key's source). On a grid key it replaces that axis (`--set seed=3`,
`--set dataset=digits`, `--set label_budget=[5, 10]`, `--set batch_budget=50`, `--set
selector=random`, `--set shifts=[]`, `--set recipe=linear-probe`; the suite keys' plural names work
too), and the suite says what each such flag replaced ("--set seed=3 replaces the grid axis seed [0, 1, 2]").
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..config import RunConfig, load_yaml, parse_label_budget, parse_set, section_names, valid_keys
from ..errors import UserError, did_you_mean
from ..picks import selection_files
from ..results import CHECKPOINT, EVENTS, SUMMARY

SUITE_KEYS = (
    "name", "description", "base", "selectors", "datasets", "label_budgets", "seeds", "batch_budgets", "shifts",
    "recipes", "backbones", "expected",
)
# keys the grid sets for each run: refused under base / a selector / a dataset
GRID_KEYS = ("selector", "dataset", "label_budget", "seed", "run_name")
DATASET_GRID_KEYS = ("label_budgets", "batch_budgets", "seeds", "shifts")
# what every run of a cell must agree on (train.* means every key of the training recipe)
MATCHED = (
    "dataset",
    "data_root",
    "test_fraction",
    "val_fraction",
    "on_corrupt",
    "backbone",
    "weights",
    "image_size",
    "batch_size",
    "batch_budget",
    "label_budget",
    "eval_every",
    "ood_eval_every",
    "shifts",
    "shift_seed",
    "train.*",
)
UNMATCHED_TRAIN = ("train.num_workers",)  # loader processes: not part of the recipe
# keys that may change between a run and its re-run without making its results stale
DRIFT_IGNORED = frozenset(
    {"out", "run_name", "device", "cache_dir", "data_root", "wandb_mode", "wandb_project", "wandb_entity",
     "wandb_group", "trackers", "plugins", "train.num_workers"}
)
FEATURE_GROUP = (
    "dataset", "data_root", "test_fraction", "val_fraction", "on_corrupt", "backbone", "weights", "image_size",
    "cache_dir",
)
_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
ATTEMPTS = ".attempts"  # <suite>/.attempts/: folders a suite ran again, kept for their logs


# ---------------------------------------------------------------------------------------------
# the grid


@dataclass(frozen=True)
class GridPoint:
    dataset: str
    label_budget: str  # as written in the suite ("2.5%", "100"); "all" for a whole-pool selector
    batch_budget: int
    selector: str  # plugin name
    label: str  # the selector entry's label (its name unless given)
    seed: int
    whole_pool: bool = False
    recipe: str | None = None  # the suite's recipes axis; None: the suite has none (the config's recipe)
    backbone: str | None = None  # the backbones axis entry's label; None: the suite has none


@dataclass
class SuiteRun:
    run_id: str
    point: GridPoint
    config: RunConfig

    @property
    def run_dir(self) -> Path:
        return Path(self.config.out) / self.run_id


@dataclass
class Suite:
    name: str
    source: str
    dir: Path  # <out>/<name>
    runs: list[SuiteRun]
    notes: list[str] = field(default_factory=list)  # what --set replaced (grid axes, entries' values)


def sanitize(text: str) -> str:
    """A file-name-safe token: '2.5%' -> '2.5pct', '/data/my set' -> 'my-set'."""
    text = text.replace("%", "pct")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


def run_id_for(suite: str, point: GridPoint) -> str:
    data = sanitize(Path(point.dataset).name or point.dataset)
    budget = "all" if point.whole_pool else sanitize(str(point.label_budget))
    recipe = f"-{sanitize(point.recipe)}" if point.recipe else ""
    backbone = f"-{sanitize(point.backbone)}" if point.backbone else ""
    return (f"{sanitize(suite)}-{data}-{budget}-b{point.batch_budget}-{sanitize(point.label)}{backbone}{recipe}"
            f"-s{point.seed}")


def load_suite(
    path: str | Path,
    out: str | None = None,
    sets: list[str] | None = None,
    whole_pool: Callable[[str], bool] | None = None,
    console: Console | None = None,
) -> Suite:
    """Reads, expands and checks a suite YAML (see the module docstring). What `--set` replaced (a grid
    axis, a dataset's or selector's value) is printed to `console` (stderr by default): the user
    sees that the flag changed the grid, not only that it was accepted."""
    data = load_yaml(path, "suite file", "Give the path of a suite YAML, e.g. benchmarks/smoke.yaml.",
                     "a mapping (name, base, selectors, datasets, ...)")
    suite = expand_suite(data, str(path), out=out, sets=sets, whole_pool=whole_pool)
    if whole_pool is None:  # the real registry (tests give their own whole_pool and may name toy selectors)
        check_options(suite)
    for note in suite.notes:
        (console or Console(stderr=True, emoji=False)).print(f"[yellow]{escape(note)}.[/]", highlight=False,
                                                             soft_wrap=True)
    return suite


def check_options(suite: Suite) -> None:
    """Each run's selector options checked against its selector (and its recipe's options against
    its recipe) before any run starts: a typo or a wrong type in `selector_options` (the suite
    file's or --set's) would otherwise fail every run of that selector, one after the other, after
    their features were extracted."""
    from ..pluginmanager import PluginHost
    from ..run.recipes import check_recipe_options
    from ..run.selection_round import check_selector_options

    hosts: dict[tuple[str, ...], PluginHost] = {}
    seen: set[str] = set()
    for run in suite.runs:
        cfg = run.config
        key = json.dumps([cfg.selector, cfg.selector_options, cfg.plugins], sort_keys=True, default=str)
        if key in seen or cfg.selection:  # a fixed selection runs no selector
            continue
        seen.add(key)
        host = hosts.setdefault(tuple(cfg.plugins), PluginHost(list(cfg.plugins)))
        try:
            check_selector_options(host, cfg.selector, cfg.selector_options)
        except UserError as e:
            raise UserError(
                f"suite '{suite.source}', run {run.run_id}: {e} An option for one selector goes on its entry: "
                f"selectors: [{{name: {cfg.selector}, selector_options: {{KEY: VALUE}}}}]."
            ) from None
        recipe_key = json.dumps(["recipe", cfg.recipe, cfg.recipe_options, cfg.plugins], sort_keys=True, default=str)
        if recipe_key not in seen:
            seen.add(recipe_key)
            try:
                check_recipe_options(host, cfg.recipe, cfg.recipe_options)
            except UserError as e:
                raise UserError(f"suite '{suite.source}', run {run.run_id}: {e}") from None


def _as_list(value: Any, key: str, source: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, int, float)):
        return [value]
    if not isinstance(value, list):
        raise UserError(f"suite key '{key}' ({source}) must be a list, got {value!r}.")
    return list(value)


def _nested_names() -> set[str]:
    return section_names()


def _flat(data: Mapping[str, Any]) -> dict[str, Any]:
    """Nested sections (`train: {lr: …}`) as dotted keys, so that layers merge key by key."""
    nested = _nested_names()
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in nested and isinstance(value, Mapping):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[str(key)] = value
    return out


def _merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Later layers win key by key; selector_options (a mapping or dotted keys) merge too."""
    out: dict[str, Any] = {}
    options: dict[str, Any] = {}
    for layer in layers:
        for key, value in _flat(layer).items():
            if key == "selector_options":
                if value is not None and not isinstance(value, Mapping):
                    raise UserError(f"selector_options must be a mapping of option: value, got {value!r}.")
                options.update(value or {})
            elif key.startswith("selector_options."):
                options[key.partition(".")[2]] = value
            else:
                out[key] = value
    if options:
        out["selector_options"] = options
    return out


def _flat_config(cfg: RunConfig) -> dict[str, Any]:
    return _flat(cfg.to_dict())


def _refuse_grid_keys(entry: Mapping[str, Any], where: str, allowed: Iterable[str] = ()) -> None:
    for key in _flat(entry):
        if key in GRID_KEYS and key not in allowed:
            raise UserError(
                f"'{key}' {where} is set by the suite's grid, not per entry: list the values under the suite's "
                f"'{_GRID_HOME[key]}'."
            )


_GRID_HOME = {"selector": "selectors", "dataset": "datasets", "label_budget": "label_budgets", "seed": "seeds",
              "run_name": "name (run folders are named by the grid)", "batch_budget": "batch_budgets"}


def _default_whole_pool(plugins: list[str]) -> Callable[[str], bool]:
    """Asks the selector registry (installed plugins + `plugins`) whether a selector takes the whole pool;
    an unknown name gets the registry's message with the known ones."""
    from ..api import capabilities_of
    from ..pluginmanager import PluginHost

    host = PluginHost(plugins)

    def whole_pool(name: str) -> bool:
        return capabilities_of(host.selectors().get(name).factory, name).whole_pool

    return whole_pool


def _entries(value: Any, key: str, source: str) -> list[tuple[str, dict[str, Any]]]:
    items = _as_list(value, key, source)
    if not items:
        raise UserError(f"suite '{source}' lists no {key}; give at least one under '{key}:'.")
    out: list[tuple[str, dict[str, Any]]] = []
    for item in items:
        if isinstance(item, str):
            out.append((item, {}))
        elif isinstance(item, Mapping) and isinstance(item.get("name"), str):
            out.append((item["name"], {k: v for k, v in item.items() if k != "name"}))
        else:
            raise UserError(
                f"each entry of '{key}' in suite '{source}' must be a name or a mapping with 'name:', got {item!r}."
            )
    return out


def _recipes(value: Any, source: str) -> list[tuple[str, dict[str, Any]]] | None:
    """The recipes axis: names, or mappings with name and recipe_options; None when absent."""
    if value is None:
        return None
    out = []
    for name, opts in _entries(value, "recipes", source):
        extra = sorted(set(opts) - {"recipe_options"})
        if extra:
            raise UserError(f"recipe '{name}' in suite {source} has key '{extra[0]}'; an entry of 'recipes' takes "
                            "only name and recipe_options.")
        ropts = opts.get("recipe_options") or {}
        if not isinstance(ropts, Mapping):
            raise UserError(f"recipe_options of recipe '{name}' in suite {source} must be a mapping, got {ropts!r}.")
        out.append((name, dict(ropts)))
    if len({n for n, _ in out}) != len(out):
        raise UserError(f"suite {source} lists a recipe twice under 'recipes': {[n for n, _ in out]}.")
    return out


BACKBONE_ENTRY_KEYS = ("label", "weights", "image_size")


def _backbones(value: Any, source: str) -> list[tuple[str, str, dict[str, Any]]] | None:
    """The backbones axis: (spec, label, the run config keys it sets); None when absent."""
    if value is None:
        return None
    out = []
    for spec, opts in _entries(value, "backbones", source):
        extra = sorted(set(opts) - set(BACKBONE_ENTRY_KEYS))
        if extra:
            raise UserError(f"backbone '{spec}' in suite {source} has key '{extra[0]}'; an entry of 'backbones' takes "
                            f"only name, {', '.join(BACKBONE_ENTRY_KEYS)}.")
        keys: dict[str, Any] = {k: opts[k] for k in ("weights", "image_size") if k in opts}
        short = spec.split(":", 1)[1] if spec.startswith("timm:") else spec
        label = str(opts.get("label") or short + (f"@{keys['image_size']}px" if "image_size" in keys else ""))
        out.append((spec, label, keys))
    labels = [lab for _, lab, _ in out]
    if len(set(labels)) != len(labels):
        raise UserError(f"suite {source} lists the backbone {sorted({x for x in labels if labels.count(x) > 1})[0]!r} "
                        "twice under 'backbones'; give each entry its own 'label:'.")
    return out


def _budgets(values: list[Any], where: str) -> list[str]:
    out: list[str] = []
    for v in values:
        parse_label_budget(v)  # the runner's own check: the message names the value
        out.append(str(v))
    if len(set(out)) != len(out):
        raise UserError(f"label budgets {where} list a value twice: {out}.")
    return out


def _ints(values: list[Any], key: str, where: str) -> list[int]:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int):
            raise UserError(f"'{key}' {where} must be whole numbers, got {v!r}.")
        out.append(v)
    if len(set(out)) != len(out):
        raise UserError(f"'{key}' {where} lists a value twice: {out}.")
    return out


# --set KEY=VALUE on a grid key replaces that axis of the grid (singular: the run config key; plural: the suite key)
SET_AXES = {"selector": "selectors", "selectors": "selectors", "dataset": "datasets", "datasets": "datasets",
            "label_budget": "label_budgets", "label_budgets": "label_budgets", "seed": "seeds", "seeds": "seeds",
            "batch_budget": "batch_budgets", "batch_budgets": "batch_budgets", "shifts": "shifts",
            "recipe": "recipes", "recipes": "recipes", "backbone": "backbones", "backbones": "backbones"}


def _text(values: Any) -> str:
    return "[" + ", ".join(str(v) for v in values) + "]" if isinstance(values, list) else str(values)


def _old_axis(data: Mapping[str, Any], axis: str, base: Mapping[str, Any], source: str) -> str:
    """The axis as the suite file gives it: one list, or a list per dataset where they differ."""
    if axis in ("selectors", "datasets"):
        return _text([n if axis == "datasets" else str(o.get("label", n)) for n, o in _entries(data.get(axis), axis,
                                                                                           source)])
    top = data.get(axis)
    if axis == "batch_budgets" and not top:
        top = [base.get("batch_budget", RunConfig().batch_budget)]
    if axis == "recipes":
        names = [n for n, _ in _entries(top, axis, source)] if top else [base.get("recipe", "finetune")]
        return _text(names)
    if axis == "backbones":
        names = [n for n, _ in _entries(top, axis, source)] if top else [base.get("backbone", RunConfig().backbone)]
        return _text(names)
    per: dict[str, str] = {}
    for ds, opts in _entries(data.get("datasets"), "datasets", source):
        own = opts.get(axis)
        if own is None and axis == "shifts" and isinstance(top, Mapping):
            own = top.get(ds, [])
        per[ds] = _text(_as_list(own if own is not None else top, axis, source))
    if len(set(per.values())) == 1:
        return next(iter(per.values()))
    return ", ".join(f"{v} for {ds}" for ds, v in per.items())


def _set_axes(data: Mapping[str, Any], given: dict[str, Any], base: dict[str, Any], source: str
              ) -> tuple[dict[str, Any], list[str]]:
    """The suite with each grid axis that `--set` names replaced by the values given (popped from
    `given`), and one note per replaced axis ("--set seed=3 replaces the grid axis seed [0, 1, 2]")."""
    data = dict(data)
    notes: list[str] = []
    if "run_name" in given:
        raise UserError(
            f"--set run_name={given['run_name']}: a suite names every run's folder from its grid "
            f"(<suite>-<dataset>-<budget>-b<batches>-<selector>-s<seed>), so run_name cannot be set for all of them. "
            "Leave it out; to write the runs elsewhere use --out, or give the suite another 'name'."
        )
    for key in [k for k in given if k in SET_AXES]:
        axis, raw = SET_AXES[key], given.pop(key)
        values = raw if isinstance(raw, list) else [raw]
        if (not values and axis != "shifts") or any(v is None or isinstance(v, Mapping) for v in values):
            raise UserError(f"--set {key}={raw!r} replaces the grid axis {axis}: give one value or a list, e.g. "
                            f"--set {key}=[a, b].")
        old = _old_axis(data, axis, base, source)
        if axis in ("selectors", "datasets"):
            entries = _entries(data.get(axis), axis, source)
            new: list[Any] = []
            for v in map(str, values):
                same = [(n, o) for n, o in entries if str(o.get("label", n)) == v] or [
                    (n, o) for n, o in entries if n == v]
                new += [{"name": n, **o} for n, o in same] or [v]
            data[axis] = new
        else:
            data[axis] = values
            data["datasets"] = [
                {"name": n, **{k: v for k, v in o.items() if k != axis}}
                for n, o in _entries(data.get("datasets"), "datasets", source)
            ]
            if axis == "batch_budgets":
                base.pop("batch_budget", None)
        if axis == "recipes":
            base.pop("recipe", None)
        if axis == "backbones":
            base.pop("backbone", None)
        shown = _text(values) if isinstance(raw, list) else str(raw)
        if old != _text(values):
            notes.append(f"--set {key}={shown} replaces the grid axis {key} {old}")
    return data, notes


def _overridden(given: Mapping[str, Any], entry: Mapping[str, Any], where: str) -> list[str]:
    """Notes for the keys of a dataset or selector entry that --set replaces (--set is the last layer)."""
    flat = _merge(entry)
    notes = []
    for key, value in _merge(given).items():
        if key == "selector_options":
            for opt, v in value.items():
                old = (flat.get("selector_options") or {}).get(opt, v)
                if old != v:
                    notes.append(f"--set selector_options.{opt}={v} replaces {old!r} {where}")
        elif key in flat and flat[key] != value:
            notes.append(f"--set {key}={value} replaces {key} {flat[key]!r} {where}")
    return notes


def _layered_config(layers: list[tuple[Mapping[str, Any], str]]) -> RunConfig:
    """A RunConfig from flat layers (later wins, key by key), each error naming the layer that set the
    key: the suite file's base, a dataset or selector entry, --set, or the grid."""
    from ..config import _Layers

    built = _Layers()
    for layer, where in layers:
        flat: dict[str, Any] = {}
        for k, v in layer.items():
            if k == "selector_options" and isinstance(v, Mapping):
                flat.update({f"selector_options.{o}": x for o, x in v.items()})
            else:
                flat[k] = v
        if flat:
            built.add(flat, where)
    return built.build()


def expand_suite(
    data: Mapping[str, Any],
    source: str = "<suite>",
    out: str | None = None,
    sets: list[str] | None = None,
    whole_pool: Callable[[str], bool] | None = None,
) -> Suite:
    """The suite's runs, each a validated RunConfig, with the matching checked."""
    unknown_keys = [k for k in data if k not in SUITE_KEYS]
    if unknown_keys:
        k = str(unknown_keys[0])
        raise UserError(
            f"unknown suite key '{k}' in {source}.{did_you_mean(k, SUITE_KEYS)} Suite keys: {', '.join(SUITE_KEYS)}; "
            "run config keys go under 'base:' (or under a selector or dataset entry)."
        )
    name = data.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise UserError(
            f"suite {source} needs a 'name' made of letters, digits, '.', '_' or '-' (it names the results "
            f"folder), got {name!r}."
        )
    if "run_name" not in valid_keys():
        raise UserError(
            "this vecaf-bench has no 'run_name' config key, which a suite needs to give each run a fixed folder. "
            "Update vecaf-bench."
        )
    base = data.get("base") or {}
    if not isinstance(base, Mapping):
        raise UserError(f"'base' in suite {source} must be a mapping of run config keys, got {base!r}.")
    base = _merge(base)
    _refuse_grid_keys(base, f"under 'base' in {source}")
    given = _merge(parse_set(sets or []))  # --set: the last layer of every run, named as such in errors
    data, notes = _set_axes(data, given, base, source)
    out_root = Path(out or given.pop("out", None) or base.pop("out", None) or RunConfig().out)
    base.pop("out", None)
    suite_dir = out_root / name
    whole_pool = whole_pool or _default_whole_pool(list(given.get("plugins") or base.get("plugins") or []))

    selectors = _entries(data.get("selectors"), "selectors", source)
    datasets = _entries(data.get("datasets"), "datasets", source)
    top_budgets = _as_list(data.get("label_budgets"), "label_budgets", source)
    top_seeds = _as_list(data.get("seeds"), "seeds", source)
    default_batch = base.pop("batch_budget", None)
    if default_batch is not None and data.get("batch_budgets"):
        raise UserError(
            f"suite {source} gives both batch_budget ({default_batch}, under 'base') and batch_budgets "
            f"({data['batch_budgets']}); keep one: batch_budgets is the grid's list (--set batch_budget=N replaces "
            "it for one invocation)."
        )
    top_batches = _as_list(data.get("batch_budgets"), "batch_budgets", source) or [
        default_batch if default_batch is not None else RunConfig().batch_budget
    ]
    top_shifts = data.get("shifts")
    recipes = _recipes(data.get("recipes"), source)
    if recipes is not None:
        for key in ("recipe", "recipe_options"):
            if key in base:
                raise UserError(f"'{key}' under 'base' in {source}: the suite's 'recipes' axis sets it for every "
                                "run; give the recipe's options in its entry (- name: lp-ft, recipe_options: {...}).")

    backbones = _backbones(data.get("backbones"), source)
    if backbones is not None and "backbone" in base:
        raise UserError(f"'backbone' under 'base' in {source}: the suite's 'backbones' axis sets it for every run; "
                        "drop one of them.")
    if "selection" in base:
        raise UserError(f"'selection' under 'base' in {source}: a fixed selection is one selector entry, "
                        f"- {{name: selection, label: NAME, selection: {base['selection']}}}, beside the others.")

    sel_specs = []
    labels_seen: dict[str, str] = {}
    for sel, opts in selectors:
        where = f"under selector '{sel}' in {source}"
        _refuse_grid_keys(opts, where)
        for k in ("batch_budget", "batch_budgets", "label_budgets", "seeds", "out"):
            if k in opts:
                raise UserError(
                    f"'{k}' {where} would give one selector other budgets or seeds than the rest; the suite refuses "
                    f"an unmatched comparison. Set it for every selector (suite level or under a dataset)."
                )
        if "selection" in opts or sel == "selection":
            if sel != "selection" or not opts.get("selection"):
                raise UserError(
                    f"selector entry '{sel}' in {source}: a fixed selection is an entry named 'selection' with the "
                    "picks file under 'selection:', e.g. - {name: selection, label: activeft-picks, "
                    "selection: picks.csv}."
                )
            # its label is fixed here, so that the run's config.yaml is the suite's (a re-run finds it)
            opts.setdefault("label", "+".join(f.stem for f in selection_files(str(opts["selection"]))))
        label = str(opts.pop("label", sel))
        if label in labels_seen:
            raise UserError(
                f"selector '{label}' is listed twice in {source}; give each entry its own 'label:' "
                f"(e.g. label: {sel}-variant) so that their runs get different ids."
            )
        labels_seen[label] = sel
        if recipes is not None and ("recipe" in opts or "recipe_options" in opts):
            raise UserError(f"'recipe' {where}: the suite's 'recipes' axis sets every run's recipe; drop the key, or "
                            "drop the axis and give each selector entry its own recipe.")
        notes += _overridden(given, opts, f"under selector '{label}'")
        if backbones is not None and "backbone" in opts:
            raise UserError(f"'backbone' {where}: the suite's 'backbones' axis sets every run's backbone.")
        sel_specs.append((sel, label, opts, False if sel == "selection" else whole_pool(sel)))

    runs: list[SuiteRun] = []
    for ds, ds_opts in datasets:
        where = f"under dataset '{ds}' in {source}"
        ds_opts = dict(ds_opts)
        _refuse_grid_keys(ds_opts, where)
        notes += _overridden(given, ds_opts, f"under dataset '{ds}'")
        if "out" in ds_opts:
            raise UserError(f"'out' {where}: a suite writes every run under <out>/{name}/; set --out instead.")
        if "batch_budget" in ds_opts:
            raise UserError(f"'batch_budget' {where}: write batch_budgets: [{ds_opts['batch_budget']}] (a list).")
        budgets = _budgets(_as_list(ds_opts.pop("label_budgets", None), "label_budgets", source) or top_budgets,
                           f"for dataset '{ds}'")
        seeds = _ints(_as_list(ds_opts.pop("seeds", None), "seeds", source) or top_seeds, "seeds", f"for '{ds}'")
        batches = _ints(_as_list(ds_opts.pop("batch_budgets", None), "batch_budgets", source) or top_batches,
                        "batch_budgets", f"for '{ds}'")
        if not budgets:
            raise UserError(f"suite {source} gives no label budget for dataset '{ds}': add 'label_budgets:' (or "
                            "--set label_budget=N).")
        if not seeds:
            raise UserError(f"suite {source} gives no seeds for dataset '{ds}': add 'seeds: [0, 1, 2]' (or "
                            "--set seed=0).")
        shifts = _shifts_for(ds, ds_opts.pop("shifts", None), top_shifts, source)
        if backbones is not None and "backbone" in ds_opts:
            raise UserError(f"'backbone' {where}: the suite's 'backbones' axis sets every run's backbone.")
        axis: list[tuple[str | None, dict[str, Any]]] = list(recipes) if recipes is not None else [(None, {})]
        bb_axis: list[tuple[str | None, str | None, dict[str, Any]]] = (
            list(backbones) if backbones is not None else [(None, None, {})])
        for batch, (spec, bb_label, bb_keys), (recipe, recipe_opts), (sel, label, sel_opts, whole) in (
            (b, k, r, s) for b in batches for k in bb_axis for r in axis for s in sel_specs
        ):
            for budget in (["all"] if whole else budgets):
                for seed in seeds:
                    point = GridPoint(ds, budget, batch, sel, label, seed, whole, recipe, bb_label)
                    rid = run_id_for(name, point)
                    grid: dict[str, Any] = dict(
                        selector=sel,
                        dataset=ds,
                        label_budget="100%" if whole else budget,
                        batch_budget=batch,
                        seed=seed,
                        out=str(suite_dir),
                        run_name=rid,
                    )
                    if label != sel:  # the board's name for this method
                        grid["label"] = label
                    if recipe is not None:
                        grid["recipe"] = recipe
                        if recipe_opts:
                            grid["recipe_options"] = recipe_opts
                    if shifts is not None:
                        grid["shifts"] = shifts
                    if spec is not None:
                        grid.update(backbone=spec, **bb_keys)
                    cfg = _layered_config([
                        ({"wandb_group": name}, "the suite's name"),
                        (base, f"under 'base' in {source}"),
                        (_merge(ds_opts), f"under dataset '{ds}' in {source}"),
                        (_merge(sel_opts), f"under selector '{label}' in {source}"),
                        (given, "--set"),
                        (grid, f"the grid of suite {source}"),
                    ])
                    runs.append(SuiteRun(rid, point, cfg))
    if data.get("expected") is not None:  # the published numbers: checked now, read by leaderboard --expected
        from ..board.expected import parse_expected

        ds_budgets: dict[str, list[Any]] = {str(r.point.dataset): [] for r in runs}
        for r in runs:
            if not r.point.whole_pool and r.point.label_budget not in ds_budgets[str(r.point.dataset)]:
                ds_budgets[str(r.point.dataset)].append(r.point.label_budget)
        names = list(dict.fromkeys([sel for sel, _, _, _ in sel_specs] + [label for _, label, _, _ in sel_specs]))
        parse_expected(data["expected"], source, names, ds_budgets)
    ids = [r.run_id for r in runs]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise UserError(f"suite {source} makes run id(s) {', '.join(dup[:3])} twice: list each dataset once.")
    suite = Suite(name=name, source=source, dir=suite_dir, runs=runs, notes=notes)
    check_matching(suite)
    return suite


def _shifts_for(ds: str, own: Any, top: Any, source: str) -> list[str] | None:
    if own is not None:
        return [str(s) for s in _as_list(own, "shifts", source)]
    if top is None:
        return None
    if isinstance(top, Mapping):
        return [str(s) for s in _as_list(top.get(ds), "shifts", source)] if ds in top else None
    return [str(s) for s in _as_list(top, "shifts", source)]


# ---------------------------------------------------------------------------------------------
# matching


def _matched_keys(flat: Mapping[str, Any]) -> list[str]:
    keys = []
    for k in MATCHED:
        if k.endswith(".*"):
            keys += sorted(x for x in flat if x.startswith(k[:-1]) and x not in UNMATCHED_TRAIN)
        else:
            keys.append(k)
    return keys


def _cells(suite: Suite) -> dict[tuple[str, str, int, str | None], list[SuiteRun]]:
    """Runs compared with each other: one dataset x label budget x batch budget (x backbone, on a
    backbones axis), with the whole-pool runs of that dataset x batch budget (x backbone)."""
    cells: dict[tuple[str, str, int, str | None], list[SuiteRun]] = {}
    for r in suite.runs:
        if not r.point.whole_pool:
            p = r.point
            cells.setdefault((p.dataset, p.label_budget, p.batch_budget, p.backbone), []).append(r)
    for r in suite.runs:
        if r.point.whole_pool:
            p = r.point
            mine = [k for k in cells if k[0] == p.dataset and k[2] == p.batch_budget and k[3] == p.backbone]
            for k in mine or [(p.dataset, "all", p.batch_budget, p.backbone)]:
                cells.setdefault(k, []).append(r)
    return cells


def _show(runs: list[str]) -> str:
    return ", ".join(runs[:3]) + (f" (+{len(runs) - 3} more)" if len(runs) > 3 else "")


def check_matching(suite: Suite) -> None:
    """Refuses a suite whose selectors would not be compared under the same conditions."""
    for (ds, budget, batch, bb), runs in _cells(suite).items():
        cell = f"{ds} / label budget {budget} / {batch} batches" + (f" / backbone {bb}" if bb else "")
        flats = {r.run_id: _flat_config(r.config) for r in runs}
        keys = _matched_keys(next(iter(flats.values())))
        for key in keys:
            by_value: dict[str, list[str]] = {}
            for r in runs:
                if key == "label_budget" and r.point.whole_pool:
                    continue
                value = json.dumps(flats[r.run_id].get(key), sort_keys=True, default=str)
                by_value.setdefault(value, []).append(r.run_id)
            if len(by_value) > 1:
                parts = "; ".join(f"{v} in {_show(ids)}" for v, ids in by_value.items())
                raise UserError(
                    f"suite '{suite.name}' ({suite.source}) breaks matched budgets: '{key}' differs within the cell "
                    f"{cell}: {parts}. Every selector of a cell must use the same backbone, weights, image size, "
                    f"batch size, training recipe (train.*), batch budget, evaluation steps, shifts and seeds. "
                    f"Set '{key}' under 'base:' (or under the dataset), not under a selector."
                )
        seeds: dict[str, set[int]] = {}
        for r in runs:
            seeds.setdefault(r.point.label, set()).add(r.point.seed)
        if len({tuple(sorted(s)) for s in seeds.values()}) > 1:
            parts = "; ".join(f"{lab}: {sorted(s)}" for lab, s in seeds.items())
            raise UserError(
                f"suite '{suite.name}' breaks matched budgets: 'seeds' differ between selectors in the cell {cell} "
                f"({parts}). Give every selector the same seeds."
            )


def feature_group(cfg: RunConfig) -> str:
    """Runs with the same group read the same cached pool features."""
    flat = _flat_config(cfg)
    return json.dumps([flat.get(k) for k in FEATURE_GROUP], default=str)


# ---------------------------------------------------------------------------------------------
# planning: what a (re-)run of the suite does with each run


@dataclass(frozen=True)
class FolderState:
    """What a run folder holds, as suites and the leaderboard read it: a summary.json that cannot be
    read is `damaged` (never "unfinished"), a run that recorded its failure is `failed`, a folder
    with a config.yaml and nothing else (the run stopped before training) is `half-made`."""

    kind: str  # missing | finished | interrupted | unfinished | failed | damaged | half-made
    dir: Path
    detail: str = ""  # why it is damaged / the failure's error / what the folder holds
    summary: dict[str, Any] | None = None
    checkpoint: bool = False

    def describe(self) -> str:
        """One clause naming the folder (or file) and what is wrong with it."""
        if self.kind == "damaged":
            return f"damaged: {self.dir / SUMMARY} cannot be read ({self.detail})"
        if self.kind == "failed":
            return f"failed: {self.dir} (error: {self.detail})"
        if self.kind == "half-made":
            return (f"half-made: {self.dir} holds {self.detail} and no events, checkpoint or summary (the run "
                    "stopped before training)")
        if self.kind == "unfinished":
            return f"unfinished: {self.dir} ({self.detail})"
        if self.kind == "interrupted":
            return f"interrupted: {self.dir} (checkpoint saved)"
        return f"{self.kind}: {self.dir}"


def read_run_folder(run_dir: str | Path) -> FolderState:
    """The state of one run folder, telling a missing summary.json from a damaged one (where
    `results.read_summary` gives None for both)."""
    d = Path(run_dir)
    if not d.is_dir():
        return FolderState("missing", d)
    ckpt = (d / CHECKPOINT).is_file()
    path = d / SUMMARY
    if path.exists():
        data: Any = None
        try:
            text = path.read_text()
            data = json.loads(text) if text.strip() else None
            problem = "the file is empty" if data is None else (
                "" if isinstance(data, dict) else f"it holds a JSON {type(data).__name__}, not an object")
        except OSError as e:
            problem = f"it cannot be opened: {e.strerror or e}"
        except ValueError as e:
            problem = f"not valid JSON: {e}"
        if problem:
            return FolderState("damaged", d, problem, checkpoint=ckpt)
        status = data.get("status")
        if status == "finished":
            return FolderState("finished", d, summary=data, checkpoint=ckpt)
        if status == "failed":
            return FolderState("failed", d, str(data.get("error") or "no error recorded"), data, ckpt)
        if ckpt:
            return FolderState("interrupted", d, summary=data, checkpoint=True)
        return FolderState("unfinished", d, f"summary status {status!r} and no checkpoint to resume from", data)
    if ckpt:
        return FolderState("interrupted", d, checkpoint=True)
    if (d / EVENTS).is_file():
        return FolderState("unfinished", d, "no summary.json and no checkpoint: the run stopped without saving "
                                            "(killed?)")
    names = sorted(p.name for p in d.iterdir())
    return FolderState("half-made", d, ", ".join(names) if names else "nothing")


@dataclass
class Planned:
    run: SuiteRun
    action: str  # skip | resume | start
    stale: bool = False  # a folder that cannot be finished or resumed is there: moved aside before the start
    found: FolderState | None = None  # what the run's folder held, when there was one

    @property
    def note(self) -> str:
        """What was found in the folder and what the suite does about it ('' for a clean start or skip)."""
        f = self.found
        if f is None or f.kind in ("missing", "finished"):
            return ""
        if self.action == "resume":
            return f"{f.describe()}; resumed from its checkpoint" if f.kind != "interrupted" else ""
        return f"{f.describe()}; run again (the old folder goes to .attempts/)"


def _drift(run: SuiteRun) -> list[str]:
    path = run.run_dir / "config.yaml"
    if not path.is_file():
        return []
    try:
        old = _flat(yaml.safe_load(path.read_text()) or {})
    except yaml.YAMLError:
        return ["config.yaml (unreadable)"]
    new = _flat_config(run.config)
    diffs = []
    for k in sorted(set(old) & set(new)):
        if k in DRIFT_IGNORED:
            continue
        if json.dumps(old[k], sort_keys=True, default=str) != json.dumps(new[k], sort_keys=True, default=str):
            diffs.append(f"{k}: {old[k]!r} there, {new[k]!r} in the suite")
    return diffs


def plan(suite: Suite) -> list[Planned]:
    """What a (re-)run does with each run: skip (finished), resume (checkpoint) or start; a failed,
    damaged, half-made or unresumable folder is started again after `move_aside`."""
    out: list[Planned] = []
    drifted: list[str] = []
    for run in suite.runs:
        d = run.run_dir
        found = read_run_folder(d)
        if found.kind == "finished":
            action, stale = "skip", False
        elif found.checkpoint and found.kind != "failed":  # a failed run starts over: its error may repeat
            action, stale = "resume", False
        else:
            action, stale = "start", found.kind != "missing"
        if action != "start":
            diffs = _drift(run)
            if diffs:
                drifted.append(f"{d} ({'; '.join(diffs[:3])})")
        out.append(Planned(run, action, stale, found))
    if drifted:
        raise UserError(
            f"suite '{suite.name}': {len(drifted)} run folder(s) were made with another config than the suite now "
            f"gives: {' | '.join(drifted[:3])}{' …' if len(drifted) > 3 else ''}. Their results would not match the "
            "suite: move those folders away (or use another --out or suite name) to run them again, or restore the "
            "suite's old values."
        )
    return out


def move_aside(suite: Suite, run: SuiteRun) -> Path:
    """A folder the suite runs again (failed, damaged, half-made, or no checkpoint to resume from) goes to
    <suite>/.attempts/, kept for its logs and never read by the leaderboard."""
    return move_folder_aside(run.run_dir)


def move_folder_aside(run_dir: str | Path) -> Path:
    """<suite>/<run-id>/ -> <suite>/.attempts/<run-id>.<k>/ (k: the first free number)."""
    run_dir = Path(run_dir)
    attempts = run_dir.parent / ATTEMPTS
    attempts.mkdir(parents=True, exist_ok=True)
    k = 1
    while (attempts / f"{run_dir.name}.{k}").exists():
        k += 1
    dest = attempts / f"{run_dir.name}.{k}"
    os.replace(run_dir, dest)
    return dest


def grid_table(planned: list[Planned]) -> RenderableType:
    """One row per run (the run id already reads suite-dataset-budget-batches-selector-seed), then one
    line per run folder that was found failed, damaged, half-made or unresumable, naming its path."""
    table = Table(title_justify="left")
    table.add_column("run (suite-dataset-labels-batches-selector-seed)", overflow="fold")
    table.add_column("action", no_wrap=True)
    for p in planned:
        found = f" ({p.found.kind} folder moved aside)" if p.stale and p.found else ""
        table.add_row(p.run.run_id, p.action + found)
    notes = [Text(f"{p.run.run_id}: {p.note}", style="yellow") for p in planned if p.note]
    return Group(table, *notes) if notes else table

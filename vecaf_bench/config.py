"""Run configuration: defaults < YAML file < CLI flags < `--set key=value`.

Configuration is data (as in open_clip): one dataclass tree, validated in one place, saved as
resolved YAML beside the results so that a run can be repeated or resumed from its folder.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError, did_you_mean


@dataclass
class TrainConfig:
    """Finetuning recipe (timm factories). lr is absolute at the configured batch size."""

    opt: str = "sgd"
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    sched: str = "cosine"
    warmup_steps: int = 10
    warmup_lr: float = 1e-5
    min_lr: float = 0.0
    label_smoothing: float = 0.1
    drop_path: float = 0.0
    augment: bool = True
    amp: bool = True  # bf16 autocast, used on CUDA only
    num_workers: int = 0


@dataclass
class RunConfig:
    selector: str = "random"
    selector_options: dict[str, Any] = field(default_factory=dict)
    dataset: str = "mnist"
    data_root: str | None = None
    test_fraction: float = 0.2
    on_corrupt: str = "skip"
    backbone: str = "timm:tf_efficientnet_lite0"
    weights: str = "default"
    image_size: int | None = None
    # text side (selectors that use text): encoder `minilm`, `open_clip:<model>[@<pretrained>]`, or
    # `auto` (minilm; the backbone's own text tower when it has one)
    text_encoder: str = "auto"
    captions: str | None = None  # CSV/JSONL of captions; default: class-name prompts
    # domain-conditioned prompts (VeCAF's OOD text-domain augmentation): `auto` takes the target
    # domains of the run's shifts (none: in-domain prompts), a name ("sketch") forces one, null: off
    text_domain: str | None = "auto"
    # OOD splits evaluated beside the test split: `NAME[:ARGS]` of shift plugins
    shifts: list[str] = field(default_factory=list)
    # seed of the shifts' random draws (corruption noise): fixed, like the test split, so that
    # run seeds vary selection and training, never the OOD data
    shift_seed: int = 0
    ood_eval_every: int | None = None  # evaluate OOD splits every k steps (None: as eval_every; 0: at the end)
    label_budget: str = "2.5%"
    batch_budget: int = 150
    batch_size: int = 32
    rounds: int = 1
    # the selector that picks round 0 (the head is untrained then): None takes the selector's own
    # Capabilities.cold_start (itself when it names none); "self" forces the selector itself
    cold_start: str | None = None
    eval_every: int = 50
    seed: int = 0
    device: str = "auto"
    out: str = "runs"
    # the run folder's name under `out`, fixed by a suite so that a re-run finds it again (None: a fresh
    # <time>-<selector>-<dataset>-s<seed>)
    run_name: str | None = None
    cache_dir: str | None = None
    trackers: list[str] = field(default_factory=lambda: ["local", "wandb"])
    wandb_mode: str | None = None
    wandb_project: str = "vecaf-bench"
    wandb_entity: str | None = None
    wandb_group: str | None = None
    plugins: list[str] = field(default_factory=list)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_NESTED = {"train": TrainConfig}
_FREE_FORM = {"selector_options"}  # validated by the selector that reads them


def valid_keys() -> list[str]:
    keys = []
    for f in fields(RunConfig):
        if f.name in _NESTED:
            keys += [f"{f.name}.{g.name}" for g in fields(_NESTED[f.name])]
        else:
            keys.append(f.name)
    return keys


def _field_types(cls: type) -> dict[str, Any]:
    hints = {}
    for f in fields(cls):
        hints[f.name] = f.type if not isinstance(f.type, str) else f.type
    return hints


def _coerce(key: str, value: Any, type_name: str, source: str) -> Any:
    """Coerce a YAML/CLI value to the field's declared type, or say which key is wrong."""
    optional = "None" in type_name
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and optional):
        if optional:
            return None
        raise UserError(f"config key '{key}' ({source}) must not be empty.")
    base = type_name.replace(" | None", "").strip()
    try:
        if base == "bool":
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "1", "yes", "on"):
                return True
            if str(value).lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if base == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if base == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if base == "str":
            if isinstance(value, (dict, list)):
                raise ValueError
            return str(value)
        if base.startswith("list"):
            if isinstance(value, str):
                return [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, list):
                raise ValueError
            return [str(v) for v in value]
        if base.startswith("dict"):
            if not isinstance(value, dict):
                raise ValueError
            return dict(value)
    except (TypeError, ValueError):
        raise UserError(
            f"config key '{key}' ({source}) must be {base}, got {value!r}. Fix the value and run again."
        ) from None
    return value


def _apply(cfg: RunConfig, data: dict[str, Any], source: str) -> None:
    keys = valid_keys()
    for key, value in data.items():
        if key in _NESTED and isinstance(value, dict):
            _apply(cfg, {f"{key}.{k}": v for k, v in value.items()}, source)
            continue
        if key.split(".")[0] in _FREE_FORM:
            head, _, rest = key.partition(".")
            target = getattr(cfg, head)
            if rest:
                target[rest] = value
            else:
                setattr(cfg, head, _coerce(key, value, "dict", source))
            continue
        if key not in keys:
            raise UserError(
                f"unknown config key '{key}' ({source}).{did_you_mean(key, keys)} "
                f"Valid keys: {', '.join(keys)}."
            )
        obj: Any = cfg
        name = key
        if "." in key:
            head, name = key.split(".", 1)
            obj = getattr(cfg, head)
        ftype = {f.name: str(f.type) for f in fields(obj)}[name]
        setattr(obj, name, _coerce(key, value, ftype, source))


def load_yaml(
    path: str | Path, what: str = "config file", missing_hint: str = "Pass the path of a YAML file to --config.",
    shape: str = "a mapping of keys to values",
) -> dict[str, Any]:
    """A YAML mapping from PATH; a missing file, bad YAML or a non-mapping is a UserError naming WHAT."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} '{p}' does not exist. {missing_hint}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        where = ""
        mark = getattr(e, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"{what} '{p}' is not valid YAML{where}: {problem}. Fix the file and run again.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{what} '{p}' must hold {shape}, got {type(data).__name__}.")
    return data


def parse_set(items: list[str]) -> dict[str, Any]:
    """`--set key=value` pairs; values are parsed as YAML scalars (`1e-3`, `true`, `[a, b]`)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects key=value, got '{item}'. Example: --set train.lr=0.01")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


def build_config(
    file: str | Path | None = None,
    flags: dict[str, Any] | None = None,
    sets: list[str] | None = None,
) -> RunConfig:
    cfg = RunConfig()
    if file is not None:
        _apply(cfg, load_yaml(file), f"in {file}")
    _apply(cfg, {k: v for k, v in (flags or {}).items() if v is not None}, "command-line flag")
    _apply(cfg, parse_set(sets or []), "--set")
    validate(cfg)
    return cfg


def config_from_dict(data: dict[str, Any], source: str) -> RunConfig:
    cfg = RunConfig()
    _apply(cfg, data, source)
    validate(cfg)
    return cfg


def parse_label_budget(value: str | int | float) -> tuple[str, float]:
    """('count', n) or ('fraction', f). Counts are whole numbers >= 1; fractions are in (0, 1]
    written as 0.05 or '5%'."""
    text = str(value).strip()
    try:
        if text.endswith("%"):
            frac = float(text[:-1]) / 100.0
            kind = "fraction"
            num = frac
        else:
            num = float(text)
            kind = "fraction" if (0 < num < 1 or ("." in text and num == 1.0)) else "count"
    except ValueError:
        raise UserError(
            f"label budget '{value}' is not a number. Give a count (e.g. 100) or a fraction of the pool "
            f"(e.g. 0.05 or 5%)."
        ) from None
    if num <= 0:
        raise UserError(
            f"label budget '{value}' must be positive: it is how many pool images may be selected. "
            f"Give a count (e.g. 100) or a fraction (e.g. 5%)."
        )
    if kind == "count" and not float(num).is_integer():
        raise UserError(f"label budget '{value}' must be a whole count or a fraction below 1.")
    if kind == "fraction" and num > 1:
        raise UserError(f"label budget '{value}' is more than 100% of the pool.")
    return kind, num


def validate(cfg: RunConfig) -> None:
    parse_label_budget(cfg.label_budget)
    positive = {"batch_budget": cfg.batch_budget, "batch_size": cfg.batch_size, "rounds": cfg.rounds}
    for key, val in positive.items():
        if val <= 0:
            what = {
                "batch_budget": "the number of optimizer steps every selector gets",
                "batch_size": "images per optimizer step",
                "rounds": "selection rounds",
            }[key]
            raise UserError(f"{key.replace('_', ' ')} must be at least 1 ({what}), got {val}.")
    if cfg.rounds > cfg.batch_budget:
        raise UserError(
            f"rounds ({cfg.rounds}) exceeds the batch budget ({cfg.batch_budget}): each round needs at least one "
            "optimizer step. Lower --rounds or raise --batch-budget."
        )
    if cfg.ood_eval_every is not None and cfg.ood_eval_every < 0:
        raise UserError(f"ood eval every must be >= 0 steps (0: only at the end), got {cfg.ood_eval_every}.")
    if cfg.eval_every < 0:
        raise UserError(f"eval every must be >= 0 steps (0: only at the end), got {cfg.eval_every}.")
    if cfg.image_size is not None and cfg.image_size < 8:
        raise UserError(f"image size must be at least 8 pixels, got {cfg.image_size}.")
    if not 0 < cfg.test_fraction < 1:
        raise UserError(f"test fraction must be in (0, 1), got {cfg.test_fraction}.")
    if cfg.on_corrupt not in ("skip", "error"):
        raise UserError(f"on_corrupt must be 'skip' or 'error', got '{cfg.on_corrupt}'.")
    if cfg.wandb_mode is not None and cfg.wandb_mode not in ("online", "offline", "disabled"):
        raise UserError(
            f"wandb mode must be online, offline or disabled, got '{cfg.wandb_mode}'."
            + did_you_mean(cfg.wandb_mode, ["online", "offline", "disabled"])
        )
    if cfg.train.lr <= 0:
        raise UserError(f"train.lr must be positive, got {cfg.train.lr}.")
    if cfg.train.warmup_steps < 0:
        raise UserError(f"train.warmup_steps must be >= 0, got {cfg.train.warmup_steps}.")


def default_cache_dir() -> Path:
    env = os.environ.get("VECAF_BENCH_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vecaf-bench"


def dump_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)

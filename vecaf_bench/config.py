"""Run configuration: defaults < YAML file < CLI flags < `--set key=value`.

Configuration is data (as in open_clip): one pydantic schema, validated in one place, saved as
resolved YAML beside the results so that a run can be repeated or resumed from its folder. Each
field's `description` documents its config key; `vecaf-bench run` takes its flags' help from it.
Ranges are declared on the fields, so a config that builds is in range; every mistake becomes a
one-paragraph `UserError` naming the key, where it was set (file, flag, --set) and the value.
"""

from __future__ import annotations

import functools
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from .errors import UserError, did_you_mean

# ---------------------------------------------------------------------------------------------
# value types: YAML and the command line give strings, numbers, bools and lists; these accept the
# forms the old hand-written coercion accepted (and refuse a bool where a number is meant)


def _no_bool(value: Any) -> Any:
    """`batch_size: true` is a mistake, not 1."""
    if isinstance(value, bool):
        raise PydanticCustomError("not_a_number", "a bool is not a number")
    return value


def _none_word(value: Any) -> Any:
    """`--set image_size=none` (or `null`) clears an optional key."""
    if isinstance(value, str) and value.strip().lower() in ("none", "null"):
        return None
    return value


def _optional_number(value: Any) -> Any:
    return _no_bool(_none_word(value))


def _names(value: Any) -> Any:
    """A list of names, or one comma-separated string (`--set shifts=a,b`); empty means none."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


Int = Annotated[int, BeforeValidator(_no_bool)]
Float = Annotated[float, BeforeValidator(_no_bool)]
OptInt = Annotated[int | None, BeforeValidator(_optional_number)]
OptStr = Annotated[str | None, BeforeValidator(_none_word)]
Names = Annotated[list[str], BeforeValidator(_names)]


class _Schema(BaseModel):
    # numbers given for a text key become text (`label_budget: 100`, `weights: 1`); nan and inf are
    # never a valid setting
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, allow_inf_nan=False)


def _refuse(tail: str) -> PydanticCustomError:
    """An error whose message is 'config key K (SOURCE) ' + tail."""
    return PydanticCustomError("config_value", "{tail}", {"tail": tail})


def _message(message: str) -> PydanticCustomError:
    """An error whose message stands on its own."""
    return PydanticCustomError("config_message", "{message}", {"message": message})


# ---------------------------------------------------------------------------------------------
# timm names: optimizers from timm's registry (imported only to check a non-default name: timm imports
# torch), schedulers from timm.scheduler.scheduler_factory.create_scheduler_v2 (it has no list function;
# tests/test_config_schema.py checks this tuple against its source and that each name builds)

TIMM_SCHEDULERS = ("cosine", "tanh", "step", "multistep", "plateau", "poly", "wsd", "rsqrt", "constant", "none")
# why a timm scheduler that vecaf-bench cannot use is refused (the runner steps the schedule once per
# optimizer step)
UNUSABLE_SCHEDULERS = {
    "plateau": "it steps once per epoch on a metric, and vecaf-bench steps the schedule once per optimizer step",
    "none": "vecaf-bench steps the schedule every optimizer step; 'constant' keeps the lr fixed after warmup",
}
SCHEDULERS = tuple(s for s in TIMM_SCHEDULERS if s not in UNUSABLE_SCHEDULERS)


@functools.cache
def timm_optimizers() -> tuple[str, ...]:
    """The names timm's `create_optimizer_v2` knows (`timm.optim.list_optimizers()`)."""
    import timm.optim

    return tuple(str(n) for n in timm.optim.list_optimizers())


def _check_optimizer(value: str) -> str:
    # create_optimizer_v2 lowercases the name and takes `lookahead_<name>` as <name> wrapped in Lookahead
    prefix, sep, name = value.lower().rpartition("_")
    names = timm_optimizers()
    if name in names and (not sep or prefix == "lookahead"):
        return value
    if not sep:
        hint = did_you_mean(name, names)
    elif prefix == "lookahead":
        hint = did_you_mean(name, names).replace(" '", " 'lookahead_", 1)
    elif name in names:
        hint = f" Did you mean '{name}' (or 'lookahead_{name}')?"
    else:
        hint = did_you_mean(value.lower(), names)
    raise _refuse(
        f"must name a timm optimizer, got {value!r}.{hint} timm has {len(names)}, e.g. sgd, momentum, adam, adamw, "
        "lamb, lion, and `lookahead_<name>` wraps one in Lookahead; list them all with: "
        "python -c \"import timm.optim; print(timm.optim.list_optimizers())\""
    )


# ---------------------------------------------------------------------------------------------
# the schema


class TrainConfig(_Schema):
    """Finetuning recipe (timm factories). lr is absolute at the configured batch size."""

    opt: str = Field(
        default="sgd",
        description="Optimizer: a timm optimizer name (timm.optim.list_optimizers()), optionally lookahead_<name>.",
    )
    lr: Float = Field(default=0.02, gt=0, description="Peak learning rate, absolute at the configured batch size.")
    momentum: Float = Field(
        default=0.9, ge=0, description="Momentum, for the optimizers that take one (sgd, rmsprop, ...)."
    )
    weight_decay: Float = Field(default=1e-4, ge=0, description="Weight decay.")
    sched: str = Field(
        default="cosine",
        description="Learning-rate schedule over the batch budget, a timm scheduler: " + ", ".join(SCHEDULERS) + ".",
    )
    warmup_steps: Int = Field(
        default=10, ge=0,
        description="Optimizer steps of linear warmup from warmup_lr (at most the batch budget minus one).",
    )
    warmup_lr: Float = Field(default=1e-5, ge=0, description="Learning rate at the start of the warmup.")
    min_lr: Float = Field(default=0.0, ge=0, description="Learning rate the schedule decays to.")
    label_smoothing: Float = Field(
        default=0.1, ge=0, lt=1, description="Label smoothing of the cross-entropy loss (0: plain cross-entropy)."
    )
    drop_path: Float = Field(default=0.0, ge=0, lt=1, description="Stochastic depth rate of the backbone.")
    augment: bool = Field(
        default=True, description="Training augmentation (timm's train transform); false: the eval transform."
    )
    amp: bool = Field(default=True, description="bf16 autocast during training, used on CUDA only.")
    channels_last: bool = Field(
        default=True,
        description="Convolution weights and image batches in NHWC (channels_last) for training, features and "
                    "evaluation: EfficientNet's depthwise convolutions 1.4-4.4x faster on a CPU, resnet18 and "
                    "convnext within 7% (benchmarks/channels_last.py); the layout tensor cores want on GPUs. "
                    "false: NCHW, as before 2026-12 (float results differ slightly).",
    )
    num_workers: Int = Field(
        default=0, ge=0, description="DataLoader worker processes (0: load in the main process)."
    )

    @field_validator("opt")
    @classmethod
    def _known_optimizer(cls, value: str) -> str:
        return value if value == "sgd" else _check_optimizer(value)  # the default needs no timm import

    @field_validator("sched")
    @classmethod
    def _known_scheduler(cls, value: str) -> str:
        if value in SCHEDULERS:
            return value
        if value in UNUSABLE_SCHEDULERS:
            raise _refuse(f"is timm's {value!r} schedule, which vecaf-bench cannot use: {UNUSABLE_SCHEDULERS[value]}. "
                          f"Use one of {', '.join(SCHEDULERS)}.")
        raise _refuse(f"must name a timm scheduler, got {value!r}.{did_you_mean(value, SCHEDULERS)} "
                      f"Known: {', '.join(SCHEDULERS)}.")


class RunConfig(_Schema):
    """One run: what to select with, on what data and backbone, under which budgets."""

    selector: str = Field(default="random", description="Selector plugin name (see `vecaf-bench list selectors`).")
    selection: OptStr = Field(
        default=None,
        description="Finetune on this selection instead of running a selector: a picks file of `vecaf-bench "
                    "select` (.csv, .jsonl, Label Studio .json; paths matched to the pool) or a run's selected.json "
                    "(pool indices); several joined by commas are the rounds of a campaign, in order.",
    )
    selector_options: dict[str, Any] = Field(
        default_factory=dict,
        description="The selector's own options, checked by the selector: --set selector_options.<name>=VALUE.",
    )
    recipe: str = Field(
        default="finetune",
        description="Finetuning recipe plugin (see `vecaf-bench list recipes`): finetune (the whole model), "
                    "linear-probe (the head on the cached features), knn (no training), lp-ft (probe, then finetune).",
    )
    recipe_options: dict[str, Any] = Field(
        default_factory=dict,
        description="The recipe's own options, checked by the recipe: --set recipe_options.<name>=VALUE.",
    )
    dataset: str = Field(default="mnist", description="Dataset name, or a folder in the ImageNet layout.")
    data_root: OptStr = Field(default=None, description="Where datasets live.")
    test_fraction: Float = Field(
        default=0.2, gt=0, lt=1,
        description="Share of the data held out as the test split when the dataset has no test split of its own.",
    )
    val_fraction: Float = Field(
        default=0.1, ge=0, lt=1,
        description="Share of the pool held out, labelled, as the validation split that targets, crossings and "
                    "'best' are read from (stratified, split seed 0 for every run seed; its labels are spent beside "
                    "the label budget). 0: no validation split (the board then reads the test split, and says so). "
                    "A dataset with a validation split of its own uses that.",
    )
    on_corrupt: Literal["skip", "error"] = Field(
        default="skip", description="skip | error: what to do with an image that fails to decode."
    )
    backbone: str = Field(
        default="timm:tf_efficientnet_lite0", description="Backbone, e.g. timm:tf_efficientnet_lite0 or resnet50."
    )
    weights: str = Field(default="default", description="default | hub | shipped | none | PATH to a state dict.")
    image_size: OptInt = Field(
        default=None, ge=8, description="Input size in pixels (default: the dataset's or backbone's)."
    )
    text_encoder: str = Field(
        default="auto",
        description="Text encoder of the selectors that use text: minilm, open_clip:<model>[@<pretrained>], or auto "
                    "(the backbone's own text tower when it has one, else minilm).",
    )
    captions: OptStr = Field(
        default=None, description="CSV or JSONL of per-image captions (default: class-name prompts)."
    )
    text_domain: OptStr = Field(
        default="auto",
        description="Domain-conditioned prompts (VeCAF's OOD text-domain augmentation): auto takes the target "
                    "domains of the run's shifts, a name (sketch) forces one, null turns it off.",
    )
    shifts: Names = Field(
        default_factory=list,
        description="OOD split beside the test split: corruption[:NAME[:SEVERITY]], domain:DATASET (repeatable).",
    )
    shift_seed: Int = Field(
        default=0, ge=0,
        description="Seed of the shifts' random draws (corruption noise), fixed like the test split so that run "
                    "seeds never vary the OOD data.",
    )
    ood_eval_every: OptInt = Field(
        default=None, ge=0,
        description="Evaluate the OOD splits every k steps (default: as eval_every; 0: only at the end).",
    )
    label_budget: str = Field(
        default="2.5%", description="Images to select: a count (100) or a fraction (0.05, 5%)."
    )
    batch_budget: Int = Field(default=150, ge=1, description="Optimizer steps, the same for every selector.")
    batch_size: Int = Field(default=32, ge=1, description="Images per optimizer step.")
    rounds: Int = Field(default=1, ge=1, description="Selection rounds; budgets are split evenly over them.")
    label: OptStr = Field(
        default=None,
        description="The method's name on the leaderboard (a suite sets it from the selector entry's label; "
                    "default: the selector's name and what sets the run apart).",
    )
    cold_start: OptStr = Field(
        default=None,
        description="The selector that picks round 0, while the head is untrained (default: the selector's own "
                    "choice; self: the selector itself).",
    )
    eval_every: Int = Field(default=50, ge=0, description="Evaluate every k steps (0: only at the end).")
    test_curve: bool = Field(
        default=True,
        description="Evaluate the test split at every evaluation, a test curve beside the validation one. false: "
                    "only where a test number is reported, at the final step and at the step of best validation "
                    "top-1 (its weights kept until the end): the same final and best numbers for about two test "
                    "passes a run. Without a validation split, and where the test split is evaluated on cached "
                    "features (linear-probe, knn), the test split is evaluated every time anyway.",
    )
    checkpoint_every: Int = Field(
        default=100, ge=0,
        description=(
            "Save a checkpoint every k optimizer steps, besides those after each selection round (0: only those)."
        ),
    )
    seed: Int = Field(default=0, ge=0, description="Seed for selection, head init and training.")
    device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N | mps.")
    out: str = Field(default="runs", description="Results folder; each run writes <out>/<run-id>/.")
    run_name: OptStr = Field(
        default=None,
        description="The run folder's name under out, fixed by a suite so that a re-run finds it again (default: "
                    "a fresh <time>-<selector>-<dataset>-s<seed>).",
    )
    cache_dir: OptStr = Field(
        default=None, description="Feature cache (default: $VECAF_BENCH_CACHE or ~/.cache)."
    )
    trackers: Names = Field(
        default_factory=lambda: ["local", "wandb"], description="Tracker plugins that record the run."
    )
    wandb_mode: Annotated[Literal["online", "offline", "disabled"] | None, BeforeValidator(_none_word)] = Field(
        default=None, description="online | offline | disabled (default: $WANDB_MODE or disabled)."
    )
    wandb_project: str = Field(default="vecaf-bench", description="W&B project.")
    wandb_entity: OptStr = Field(default=None, description="W&B entity (default: your W&B default).")
    wandb_group: OptStr = Field(default=None, description="W&B group (e.g. a suite name).")
    plugins: Names = Field(
        default_factory=list, description="Import a plugin module that is not installed (repeatable)."
    )
    train: TrainConfig = Field(
        default_factory=lambda: TrainConfig(), description="The finetuning recipe: train.<key>."
    )

    @field_validator("selector_options", "recipe_options")
    @classmethod
    def _finite_options(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        # the schema refuses nan and inf in its typed numbers; the selector's own options are free-form, so
        # they are walked here: a nan tau or lr trains to chance and writes NaN into summary.json
        bad = _non_finite(value, str(info.field_name))
        if bad is not None:
            raise PydanticCustomError("non_finite_option", "not finite", {"key": bad[0], "value": bad[1]})
        return value

    @field_validator("label_budget")
    @classmethod
    def _label_budget(cls, value: str) -> str:
        try:
            parse_label_budget(value)
        except UserError as e:
            raise _message(str(e)) from None
        return value

    @model_validator(mode="after")
    def _rounds_fit(self) -> RunConfig:
        from .budget import check_rounds  # budget imports this module

        kind, count = parse_label_budget(self.label_budget)
        # a fraction is checked against the pool by the runner; here only what the numbers show
        labels = int(count) if kind == "count" else self.rounds
        try:
            check_rounds(labels, self.batch_budget, self.rounds, whole_pool=False)
        except UserError as e:
            raise _message(str(e)) from None
        return self

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (nested `train`), as written to config.yaml."""
        return self.model_dump()

    def replace(self, **changes: Any) -> RunConfig:
        """A validated copy with CHANGES (config keys; `train=` takes a TrainConfig or a mapping)."""
        source = "RunConfig.replace"
        given = _flatten(changes, source)  # refuses a section given a value
        data = self.to_dict()
        for key, value in changes.items():
            data[key] = value.model_dump() if isinstance(value, BaseModel) else value
        try:
            return type(self).model_validate(data)
        except ValidationError as e:
            raise _user_error(e, dict.fromkeys(given, source), given) from None


def _non_finite(value: Any, key: str) -> tuple[str, Any] | None:
    """(dotted key, value) of the first nan or inf in VALUE (mappings and lists walked), else None."""
    if isinstance(value, float) and not math.isfinite(value):
        return key, value
    items = value.items() if isinstance(value, Mapping) else enumerate(value) if isinstance(value, list | tuple) else ()
    for k, v in items:
        found = _non_finite(v, f"{key}[{k}]" if isinstance(k, int) else f"{key}.{k}")
        if found is not None:
            return found
    return None


SECTIONS: dict[str, type[_Schema]] = {"train": TrainConfig}  # nested sections, set as <section>.<key>
FREE_FORM = ("selector_options", "recipe_options")  # validated by the selector (the recipe) that reads them
_SECTION_EXAMPLES = {"train": "train.lr=0.01"}


def section_names() -> set[str]:
    return set(SECTIONS)


def valid_keys() -> list[str]:
    keys = []
    for name in RunConfig.model_fields:
        if name in SECTIONS:
            keys += [f"{name}.{k}" for k in SECTIONS[name].model_fields]
        else:
            keys.append(name)
    return keys


def description(key: str) -> str:
    """The documentation of config key KEY (`train.lr` for a section's key)."""
    head, _, rest = key.partition(".")
    model: type[_Schema] = SECTIONS[head] if rest and head in SECTIONS else RunConfig
    desc = model.model_fields[rest or head].description
    assert desc, f"config key {key} has no description"
    return desc


# ---------------------------------------------------------------------------------------------
# sources: each layer sets dotted keys; the last layer to set a key wins and is named in its errors


def _flatten(data: Mapping[str, Any], source: str = "", into: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {} if into is None else into
    for raw_key, value in data.items():
        key = str(raw_key)
        if key in SECTIONS:
            if value is None:  # `train:` with every line under it commented out
                continue
            if isinstance(value, BaseModel):
                value = value.model_dump()
            if not isinstance(value, Mapping):
                keys = list(SECTIONS[key].model_fields)
                example = _SECTION_EXAMPLES.get(key, f"{key}.{keys[0]}=VALUE")
                raise UserError(
                    f"config key '{key}' ({source or 'given'}) is a section, not a value, got {value!r}: set its keys "
                    f"as {key}.<key> (e.g. --set {example}), or as a mapping under '{key}:' in YAML. "
                    f"Keys of {key}: {', '.join(keys)}."
                )
            _flatten({f"{key}.{k}": v for k, v in value.items()}, source, out)
        elif key in FREE_FORM:
            # the whole mapping replaces what earlier layers set, option by option or whole
            for old in [k for k in out if k == key or k.startswith(key + ".")]:
                del out[old]
            out[key] = value
        else:
            out[key] = value
    return out


class _Layers:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.sources: dict[str, str] = {}

    def add(self, data: Mapping[str, Any], source: str) -> None:
        flat = _flatten(data, source)
        for key in flat:
            head = key.partition(".")[0]
            if head in FREE_FORM and key == head:
                for old in [k for k in self.values if k == head or k.startswith(head + ".")]:
                    del self.values[old]
                    del self.sources[old]
            self.values.pop(key, None)  # re-inserted last, so that later layers apply later
            self.sources.pop(key, None)
        for key, value in flat.items():
            self.values[key] = value
            self.sources[key] = source

    def nested(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in self.values.items():
            head, dot, rest = key.partition(".")
            if dot and head in SECTIONS:
                out.setdefault(head, {})[rest] = value
            elif dot and head in FREE_FORM:
                opts = out.get(head)
                if opts is None:
                    opts = out[head] = {}
                if isinstance(opts, dict):
                    opts[rest] = value
            elif key in FREE_FORM and isinstance(value, Mapping):
                out[key] = dict(value)
            else:
                out[key] = value
        return out

    def build(self) -> RunConfig:
        try:
            return RunConfig.model_validate(self.nested())
        except ValidationError as e:
            raise _user_error(e, self.sources, self.values) from None


# ---------------------------------------------------------------------------------------------
# pydantic's errors as one paragraph in the words vecaf-bench has always used

_TYPE_ERRORS = {"not_a_number", "int_parsing", "int_from_float", "int_type", "float_parsing", "float_type",
                "bool_parsing", "bool_type", "string_type", "list_type", "dict_type", "model_type",
                "model_attributes_type"}
# range messages of the old hand-written validate(), kept word for word
_RANGE_MESSAGES = {
    "batch_budget": "batch budget must be at least 1 (the number of optimizer steps every selector gets), got {value}.",
    "batch_size": "batch size must be at least 1 (images per optimizer step), got {value}.",
    "rounds": "rounds must be at least 1 (selection rounds), got {value}.",
    "ood_eval_every": "ood eval every must be >= 0 steps (0: only at the end), got {value}.",
    "eval_every": "eval every must be >= 0 steps (0: only at the end), got {value}.",
    "image_size": "image size must be at least 8 pixels, got {value}.",
    "test_fraction": "test fraction must be in (0, 1), got {value}.",
    "val_fraction": "val_fraction must be in [0, 1) (0: no validation split), got {value}.",
    "on_corrupt": "on_corrupt must be 'skip' or 'error', got '{value}'.",
    "wandb_mode": "wandb mode must be online, offline or disabled, got '{value}'.{hint}",
    "train.lr": "train.lr must be positive, got {value}.",
    "train.warmup_steps": "train.warmup_steps must be >= 0, got {value}.",
}
_BOUNDS = {"greater_than_equal": ("ge", "at least"), "greater_than": ("gt", "greater than"),
           "less_than_equal": ("le", "at most"), "less_than": ("lt", "less than")}


def _key_of(loc: tuple[int | str, ...]) -> str:
    if not loc:
        return ""
    head = str(loc[0])
    if head in SECTIONS and len(loc) > 1:
        return f"{head}.{loc[1]}"
    return head


def _annotation(key: str) -> Any:
    head, _, rest = key.partition(".")
    model: type[_Schema] = SECTIONS[head] if rest and head in SECTIONS else RunConfig
    f = model.model_fields.get(rest if rest and head in SECTIONS else key)
    return f.annotation if f is not None else None


def _type_name(annotation: Any) -> str:
    args = get_args(annotation)
    if get_origin(annotation) in (Union, UnionType):
        inner = [a for a in args if a is not type(None)]
        return _type_name(inner[0]) if len(inner) == 1 else " or ".join(_type_name(a) for a in inner)
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if get_origin(annotation) is list:
        return "a list of " + _type_name(args[0]) if args else "a list"
    if get_origin(annotation) is dict or annotation is dict:
        return "a mapping of option: value"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "a mapping (a section)"
    return getattr(annotation, "__name__", str(annotation))


def _rank(err: ErrorDetails) -> int:
    """An unknown key first (it explains the rest), then a wrong type, then a value out of range."""
    if err["type"] == "extra_forbidden":
        return 0
    return 1 if err["type"] in _TYPE_ERRORS else 2


def _sentence(err: ErrorDetails, sources: Mapping[str, str], values: Mapping[str, Any]) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    key = _key_of(err["loc"])
    if kind == "config_message":
        return str(ctx["message"])
    if kind == "non_finite_option":
        key = str(ctx["key"])
        source = sources.get(key) or sources.get(_key_of(err["loc"]), "default")
        return (f"config key '{key}' ({source}) must be a finite number, got {ctx['value']!r}: nan and inf can only "
                "give a nonsense run. Fix the value and run again.")
    source = sources.get(key) or next((s for k, s in sources.items() if k.startswith(key + ".")), "default")
    given = values.get(key, err["input"])
    if kind == "extra_forbidden":
        key = ".".join(str(p) for p in err["loc"])
        source = sources.get(key, source)
        keys = valid_keys()
        return f"unknown config key '{key}' ({source}).{did_you_mean(key, keys)} Valid keys: {', '.join(keys)}."
    where = f"config key '{key}' ({source})"
    if kind == "config_value":
        return f"{where} {ctx['tail']}"
    if kind in _TYPE_ERRORS:
        if given is None:
            return f"{where} must not be empty."
        try:  # what the key is for: `label_budget` "must be str" alone does not say a count or a fraction
            what = f" ({key}: {description(key).rstrip('.')})"
        except (KeyError, AssertionError):
            what = ""
        return f"{where} must be {_type_name(_annotation(key))}, got {given!r}{what}. Fix the value and run again."
    if kind == "literal_error":
        if key in _RANGE_MESSAGES:
            return _RANGE_MESSAGES[key].format(value=err["input"], hint=did_you_mean(str(err["input"]), _choices(key)))
        return (f"{where} must be one of {ctx.get('expected')}, got {err['input']!r}."
                f"{did_you_mean(str(err['input']), _choices(key))}")
    if kind == "finite_number":
        return f"{where} must be a finite number, got {given!r}. Fix the value and run again."
    if kind in _BOUNDS:
        if key in _RANGE_MESSAGES:
            return _RANGE_MESSAGES[key].format(value=_as_declared(key, err["input"]), hint="")
        name, words = _BOUNDS[kind]
        value = _as_declared(key, err["input"])
        return f"{where} must be {words} {ctx.get(name)}, got {value!r}. Fix the value and run again."
    return f"{where}: {err['msg']}, got {given!r}. Fix the value and run again."


def _as_declared(key: str, value: Any) -> Any:
    """VALUE as the key's type holds it (`-1` given for a float reads `-1.0`)."""
    declared = [a for a in (_annotation(key), *get_args(_annotation(key))) if a in (int, float)]
    try:
        return declared[0](value) if declared else value
    except (TypeError, ValueError):
        return value


def _choices(key: str) -> list[str]:
    annotation = _annotation(key)
    for part in (annotation, *get_args(annotation)):
        if get_origin(part) is Literal:
            return [str(a) for a in get_args(part)]
    return []


def _user_error(e: ValidationError, sources: Mapping[str, str], values: Mapping[str, Any]) -> UserError:
    errs = sorted(e.errors(), key=_rank)
    message = _sentence(errs[0], sources, values)
    others = []
    for err in errs[1:]:
        key = ".".join(str(p) for p in err["loc"]) if err["type"] == "extra_forbidden" else _key_of(err["loc"])
        if key and key not in others:
            others.append(key)
    if others:
        message += f" Also wrong: {', '.join(repr(k) for k in others[:5])}{' …' if len(others) > 5 else ''}."
    return UserError(message)


# ---------------------------------------------------------------------------------------------
# files and flags


def load_yaml(
    path: str | Path, what: str = "config file", missing_hint: str = "Pass the path of a YAML file to --config.",
    shape: str = "a mapping of keys to values", allow_empty: bool = False,
) -> dict[str, Any]:
    """A YAML mapping from PATH; a missing, empty or non-mapping file or bad YAML is a UserError naming WHAT."""
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
        if allow_empty:
            return {}
        hint = ("give at least one key (e.g. 'selector: random'), or leave out --config to run with the defaults"
                if what == "config file" else f"it must hold {shape}")
        raise UserError(f"{what} '{p}' is empty (or holds only comments); {hint}.")
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
    """Defaults < the YAML FILE < command-line FLAGS (None: not given) < `--set key=value` SETS."""
    layers = _Layers()
    if file is not None:
        data = load_yaml(file, allow_empty=True)
        if not data:  # a template with every line commented out is a mistake more often than a choice
            print(
                f"warning: config file '{file}' is empty (or holds only comments), so it sets nothing: the run uses "
                "the defaults, the flags and --set. Give at least one key (e.g. 'selector: random') or leave out "
                "--config to silence this.",
                file=sys.stderr,
            )
        layers.add(data, f"in {file}")
    layers.add({k: v for k, v in (flags or {}).items() if v is not None}, "command-line flag")
    layers.add(parse_set(sets or []), "--set")
    return layers.build()


def config_from_dict(data: Mapping[str, Any], source: str) -> RunConfig:
    """A RunConfig from DATA (nested sections or dotted keys); errors name SOURCE."""
    layers = _Layers()
    layers.add(data, source)
    return layers.build()


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
    if num != num or num in (float("inf"), float("-inf")):
        raise UserError(f"label budget '{value}' is not a finite number. Give a count (e.g. 100) or a fraction (5%).")
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
    """Checks a RunConfig that was changed after it was built (a built one is valid by construction)."""
    try:
        RunConfig.model_validate(cfg.to_dict())
    except ValidationError as e:
        raise _user_error(e, {}, {}) from None


def default_cache_dir() -> Path:
    env = os.environ.get("VECAF_BENCH_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vecaf-bench"


def dump_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


__all__ = [
    "FREE_FORM", "SCHEDULERS", "SECTIONS", "TIMM_SCHEDULERS", "RunConfig", "TrainConfig", "build_config",
    "config_from_dict", "default_cache_dir", "description", "dump_yaml", "load_yaml", "parse_label_budget",
    "parse_set", "section_names", "timm_optimizers", "valid_keys", "validate",
]

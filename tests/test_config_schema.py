"""The run config as a pydantic schema: old messages kept, ranges impossible by construction,
timm names checked, and the `run` flags tied to the schema's fields and descriptions."""

import inspect
import re
import typing

import pytest
import typer
from pydantic import ValidationError

from vecaf_bench.config import (
    SCHEDULERS,
    TIMM_SCHEDULERS,
    UNUSABLE_SCHEDULERS,
    RunConfig,
    TrainConfig,
    build_config,
    config_from_dict,
    description,
    dump_yaml,
    timm_optimizers,
    valid_keys,
)
from vecaf_bench.errors import UserError


def message(flags=None, sets=()):
    with pytest.raises(UserError) as e:
        build_config(None, flags, list(sets))
    return str(e.value)


# word for word what common mistakes say (the schema kept the hand-written wording; issue 15 added the
# key's description to type errors and the largest rounds that fit)
OLD_WORDING = [
    (None, ["batch_budget=many"],
     "config key 'batch_budget' (--set) must be int, got 'many' (batch_budget: Optimizer steps, the same for every "
     "selector). Fix the value and run again."),
    (None, ["train.lr=abc"], "config key 'train.lr' (--set) must be float, got 'abc' (train.lr: Peak learning rate, "
                             "absolute at the configured batch size). Fix the value and run again."),
    (None, ["seed=1.5"], "config key 'seed' (--set) must be int, got 1.5 (seed: Seed for selection, head init and "
                         "training). Fix the value and run again."),
    (None, ["train.augment=maybe"],
     "config key 'train.augment' (--set) must be bool, got 'maybe' (train.augment: Training augmentation (timm's train "
     "transform); false: the eval transform). Fix the value and run again."),
    (None, ["seed="], "config key 'seed' (--set) must not be empty."),
    ({"batch_budget": 0}, [],
     "batch budget must be at least 1 (the number of optimizer steps every selector gets), got 0."),
    ({"batch_size": 0}, [], "batch size must be at least 1 (images per optimizer step), got 0."),
    ({"rounds": 0}, [], "rounds must be at least 1 (selection rounds), got 0."),
    ({"rounds": 200}, [], "--rounds 200 with batch_budget 150 leaves rounds that train for no optimizer step (each "
                          "budget is split evenly over the rounds): use --rounds 150 or fewer, or a larger "
                          "--batch-budget."),
    ({"label_budget": "0"}, [], "label budget '0' must be positive: it is how many pool images may be selected. "
                                "Give a count (e.g. 100) or a fraction (e.g. 5%)."),
    ({"image_size": 4}, [], "image size must be at least 8 pixels, got 4."),
    (None, ["test_fraction=1.5"], "test fraction must be in (0, 1), got 1.5."),
    ({"on_corrupt": "skp"}, [], "on_corrupt must be 'skip' or 'error', got 'skp'."),
    ({"wandb_mode": "ofline"}, [],
     "wandb mode must be online, offline or disabled, got 'ofline'. Did you mean 'offline'?"),
    ({"eval_every": -1}, [], "eval every must be >= 0 steps (0: only at the end), got -1."),
    (None, ["ood_eval_every=-2"], "ood eval every must be >= 0 steps (0: only at the end), got -2."),
    (None, ["train.lr=-1"], "train.lr must be positive, got -1.0."),
    (None, ["train.warmup_steps=-1"], "train.warmup_steps must be >= 0, got -1."),
]


@pytest.mark.parametrize("flags,sets,old", OLD_WORDING)
def test_common_mistakes_keep_the_old_wording(flags, sets, old):
    assert message(flags, sets) == old


def test_unknown_key_keeps_the_old_wording(tmp_path):
    valid = ", ".join(valid_keys())
    assert message(None, ["train.lrr=1"]) == (
        f"unknown config key 'train.lrr' (--set). Did you mean 'train.lr'? Valid keys: {valid}."
    )
    f = tmp_path / "c.yaml"
    f.write_text("batch_budgett: 3\n")
    with pytest.raises(UserError) as e:
        build_config(f)
    assert str(e.value) == (
        f"unknown config key 'batch_budgett' (in {f}). Did you mean 'batch_budget'? Valid keys: {valid}."
    )


def test_unknown_key_is_named_before_other_mistakes():
    text = message({"seed": -1}, ["bogus_key=1", "train.lr=x"])
    assert text.startswith("unknown config key 'bogus_key' (--set).")
    assert text.endswith("Also wrong: 'train.lr', 'seed'.")  # a wrong type before a range


def test_a_section_given_a_value_says_it_is_a_section(tmp_path):
    text = message(None, ["train=5"])
    assert "'train' (--set) is a section" in text and "train.<key>" in text and "unknown" not in text
    assert "Keys of train: " + ", ".join(TrainConfig.model_fields) + "." in text
    f = tmp_path / "c.yaml"
    f.write_text("train: 0.1\n")
    with pytest.raises(UserError, match=rf"'train' \(in {re.escape(str(f))}\) is a section"):
        build_config(f)
    f.write_text("train:\n  # lr: 0.1\nseed: 2\n")  # an empty section is no section
    assert build_config(f).train == TrainConfig()


def test_an_empty_config_file_gives_the_defaults(tmp_path):
    f = tmp_path / "empty.yaml"
    f.write_text("# nothing yet\n")
    assert build_config(f) == build_config()


@pytest.mark.parametrize(
    "sets,fragment",
    [
        (["seed=-1"], "config key 'seed' (--set) must be at least 0, got -1."),
        (["shift_seed=-1"], "'shift_seed' (--set) must be at least 0"),
        (["train.num_workers=-1"], "'train.num_workers' (--set) must be at least 0, got -1."),
        (["train.lr=.nan"], "'train.lr' (--set) must be a finite number, got nan."),
        (["train.lr=.inf"], "'train.lr' (--set) must be a finite number, got inf."),
        (["train.momentum=-0.5"], "'train.momentum' (--set) must be at least 0"),
        (["train.label_smoothing=1"], "'train.label_smoothing' (--set) must be less than 1"),
        (["train.drop_path=-0.1"], "'train.drop_path' (--set) must be at least 0"),
        (["test_fraction=0"], "test fraction must be in (0, 1), got 0.0."),
        (["batch_size=true"], "'batch_size' (--set) must be int, got True (batch_size: Images per optimizer step)."),
        (["train.opt=sgdd"], "'train.opt' (--set) must name a timm optimizer, got 'sgdd'. Did you mean 'sgd'?"),
        (["train.opt=lookahead_adamww"], "Did you mean 'lookahead_adamw'?"),
        (["train.opt=foo_sgd"], "must name a timm optimizer, got 'foo_sgd'"),
        (["train.sched=cosin"],
         "'train.sched' (--set) must name a timm scheduler, got 'cosin'. Did you mean 'cosine'?"),
        (["train.sched=plateau"], "vecaf-bench cannot use"),
        (["train.sched=none"], "'constant' keeps the lr fixed"),
        (["selector_options=5"], "'selector_options' (--set) must be a mapping"),
    ],
)
def test_ranges_are_declared_on_the_fields(sets, fragment):
    assert fragment in message(None, sets)


def test_the_schema_refuses_out_of_range_values_itself():
    for bad in ({"seed": -1}, {"batch_size": 0}, {"test_fraction": 1.0}, {"train": {"lr": float("nan")}},
                {"train": {"sched": "cosin"}}, {"on_corrupt": "maybe"}, {"image_size": 7}, {"selecter": "x"}):
        with pytest.raises(ValidationError):
            RunConfig.model_validate(bad)


def test_layers_and_forms():
    cfg = build_config(None, {"seed": 3, "shifts": ["a"]},
                       ["seed=4", "shifts=b,c", "image_size=none", "label_budget=100", "train.opt=AdamW",
                        "train.lr=1e-3", "selector_options={a: 1, b: 2}", "selector_options.b=3"])
    assert cfg.seed == 4 and cfg.shifts == ["b", "c"] and cfg.image_size is None and cfg.label_budget == "100"
    assert cfg.train.opt == "AdamW" and cfg.train.lr == 0.001 and cfg.selector_options == {"a": 1, "b": 3}
    # a whole selector_options mapping replaces the options set before it
    assert build_config(None, None, ["selector_options.x=1", "selector_options={y: 2}"]).selector_options == {"y": 2}
    # dotted keys and nested sections read the same (suite.py passes dotted ones)
    assert config_from_dict({"train.lr": 0.5}, "x") == config_from_dict({"train": {"lr": 0.5}}, "x")


def test_to_dict_replace_and_mutation():
    cfg = build_config(None, {"dataset": "digits"}, ["train.lr=0.5"])
    d = cfg.to_dict()
    assert type(d) is dict and type(d["train"]) is dict and d["train"]["lr"] == 0.5
    assert config_from_dict(d, "round trip") == cfg
    assert dump_yaml(cfg) == dump_yaml(config_from_dict(d, "round trip"))
    other = cfg.replace(dataset="mnist", train={"lr": 0.1})
    assert other.dataset == "mnist" and other.train.lr == 0.1 and cfg.dataset == "digits" and cfg.train.lr == 0.5
    assert cfg.replace(train=TrainConfig(lr=0.3)).train.lr == 0.3
    with pytest.raises(UserError, match=r"'seed' \(RunConfig.replace\) must be at least 0"):
        cfg.replace(seed=-1)
    with pytest.raises(UserError, match="unknown config key 'datset'.*Did you mean 'dataset'"):
        cfg.replace(datset="x")
    cfg.selector_options["chunk"] = 4  # mutable after build, as before
    assert cfg.to_dict()["selector_options"] == {"chunk": 4}


def test_every_key_is_documented():
    for model in (RunConfig, TrainConfig):
        for name, f in model.model_fields.items():
            assert f.description and f.description.strip().endswith("."), f"{model.__name__}.{name}"
    assert description("train.lr") == TrainConfig.model_fields["lr"].description


# -- timm names ---------------------------------------------------------------------------------


def test_scheduler_names_are_those_of_timms_factory():
    from timm.scheduler import create_scheduler_v2

    src = inspect.getsource(create_scheduler_v2)
    named = set(re.findall(r"sched\s*[!=]=\s*'(\w+)'", src))
    for group in re.findall(r"sched in \(([^)]*)\)", src):
        named |= set(re.findall(r"'(\w+)'", group))
    assert named == set(TIMM_SCHEDULERS)
    assert set(SCHEDULERS) | set(UNUSABLE_SCHEDULERS) == set(TIMM_SCHEDULERS)


def _step_once(tc: TrainConfig) -> None:
    import torch

    from vecaf_bench.train import build_optimizer

    opt, sched = build_optimizer(torch.nn.Linear(2, 2), tc, total_steps=20)
    opt.step()
    sched.step_update(num_updates=5)  # what the runner does after every optimizer step


@pytest.mark.parametrize("name", SCHEDULERS)
def test_every_accepted_scheduler_builds_and_steps(name):
    _step_once(TrainConfig(sched=name))


@pytest.mark.parametrize("name", sorted(UNUSABLE_SCHEDULERS))
def test_refused_schedulers_would_fail_in_the_runner(name):
    with pytest.raises((AssertionError, AttributeError)):
        _step_once(TrainConfig.model_construct(sched=name))


def test_timm_refuses_what_the_schema_refuses():
    import torch
    from timm.scheduler import create_scheduler_v2

    opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1)
    with pytest.raises(ValueError, match="Unknown scheduler"):
        create_scheduler_v2(opt, sched="cosin")


def test_optimizer_names_come_from_timms_registry():
    import timm.optim

    assert timm_optimizers() == tuple(timm.optim.list_optimizers())
    for name in ("adamw", "AdamW", "lookahead_adamw", "momentum", "lamb"):
        _step_once(TrainConfig(opt=name))
    for bad in ("sgdd", "foo_sgd", "lookahead_"):
        with pytest.raises(ValidationError):
            TrainConfig(opt=bad)


# -- the `run` command's flags ---------------------------------------------------------------------

NOT_CONFIG = {"config", "set_", "resume"}
FLAG_FIELD = {"plugin": "plugins"}  # the flag is singular: repeat it


def _run_params():
    from vecaf_bench.cli import app

    command = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
    return [p for p in command.params if p.name not in NOT_CONFIG]


def test_run_flags_name_schema_fields_and_take_their_help_from_it():
    params = _run_params()
    assert params
    for p in params:
        field = FLAG_FIELD.get(p.name, p.name)
        assert field in RunConfig.model_fields, f"--{p.name} names no RunConfig field"
        assert p.help == description(field), f"--{p.name}: help differs from RunConfig.{field}'s description"


def test_run_passes_every_flag_to_build_config(cli, monkeypatch, tmp_path):
    import vecaf_bench.config as config_module

    args, expected = [], {}
    for p in _run_params():
        field = FLAG_FIELD.get(p.name, p.name)
        annotation = RunConfig.model_fields[field].annotation
        number = int in (annotation, *typing.get_args(annotation))
        value = "7" if number else f"v-{field}"
        args += [p.opts[0], value]
        expected[field] = [value] if p.multiple else (int(value) if number else value)
    seen = {}

    def capture(file, flags, sets):
        seen.update(flags)
        raise UserError("captured")

    monkeypatch.setattr(config_module, "build_config", capture)
    r = cli("run", *args)
    assert r.exit_code == 2 and "captured" in r.output, r.output
    assert seen == expected


# -- through the command line: one paragraph, exit 2 ---------------------------------------------


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--seed", "-1"], "config key 'seed' (command-line flag) must be at least 0, got -1."),
        (["--set", "train.num_workers=-1"], "'train.num_workers' (--set) must be at least 0"),
        (["--set", "train.lr=.nan"], "'train.lr' (--set) must be a finite number, got nan."),
        (["--set", "train.lr=.inf"], "'train.lr' (--set) must be a finite number, got inf."),
        (["--batch-size", "0"], "batch size must be at least 1"),
        (["--set", "train.opt=sgdd"], "Did you mean 'sgd'?"),
        (["--set", "train.sched=cosin"], "Did you mean 'cosine'?"),
        (["--on-corrupt", "skp"], "on_corrupt must be 'skip' or 'error'"),
        (["--wandb-mode", "ofline"], "Did you mean 'offline'?"),
        (["--image-size", "4"], "image size must be at least 8 pixels"),
        (["--set", "test_fraction=1"], "test fraction must be in (0, 1)"),
        (["--eval-every", "-1"], "eval every must be >= 0 steps"),
        (["--set", "ood_eval_every=-1"], "ood eval every must be >= 0 steps"),
        (["--set", "train=5"], "'train' (--set) is a section"),
    ],
)
def test_out_of_range_through_the_cli(cli, tmp_path, args, fragment):
    r = cli("run", *args, "--out", tmp_path)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and fragment in r.output, r.output
    assert "\n" not in r.output.strip(), r.output  # one paragraph


def test_empty_config_file_through_the_cli(cli, tmp_path):
    f = tmp_path / "empty.yaml"
    f.write_text("")
    r = cli("run", "--config", f, "--set", "nosuch=1", "--out", tmp_path)
    assert f"config file '{f}' is empty" in " ".join(r.output.split()), r.output

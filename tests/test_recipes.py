"""Finetuning recipes as plugins: each built-in passes the conformance kit and runs end to end on
digits; linear-probe and lp-ft's probe leave the backbone alone, knn fits nothing and still
classifies, linear-probe resumes to the uninterrupted result, and a misspelled recipe or option is
refused before torch is imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import torch
from conftest import TINY, run_dirs, summary_of

from vecaf_bench.api import RecipeRequest, UserError
from vecaf_bench.config import RunConfig
from vecaf_bench.identity import identity_fields
from vecaf_bench.pluginmanager import PluginHost
from vecaf_bench.run import runner as runner_module
from vecaf_bench.testing import check_recipe, make_recipe_world

RECIPES = ("finetune", "linear-probe", "knn", "lp-ft")


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost()


# -- the kit -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, options", [
    ("finetune", {}), ("linear-probe", {"lr": 0.5}), ("knn", {"k": 3}), ("lp-ft", {}),
    ("lp-ft", {"probe_fraction": 0.75}),  # the resume check stops at the switch from probing to finetuning
])  # fmt: skip
def test_each_builtin_recipe_passes_the_kit(host, name, options):
    check_recipe(host.recipes().get(name).factory, options=options, name=name)


class _ForgetsItsOptimizer:
    """A linear probe whose checkpoint lacks the optimizer: a resumed run drifts."""

    def __init__(self, request: RecipeRequest) -> None:
        from vecaf_bench_plugins.recipes.linear_probe import LinearProbe

        self.inner = LinearProbe(request)
        self.model = request.model

    step = property(lambda self: self.inner.step)
    train_images = property(lambda self: 0)

    def train_round(self, *args: Any) -> None:
        self.inner.train_round(*args)

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "global_step": self.step}

    def restore(self, ckpt: Any) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.inner.state.global_step = ckpt["global_step"]


class _SkipsSteps(_ForgetsItsOptimizer):
    """Spends one step fewer than it is given."""

    def train_round(self, r: int, training_set: Any, steps: int, *rest: Any) -> None:
        self.inner.train_round(r, training_set, steps - 1, *rest)


@pytest.mark.parametrize("recipe, check", [(_ForgetsItsOptimizer, "resume"), (_SkipsSteps, "steps")])
def test_the_kit_catches(recipe, check):
    with pytest.raises(AssertionError, match=f"failed check '{check}'"):
        check_recipe(recipe, name="bad")


def test_bad_option_values_and_torchrun_are_refused(host):
    world = make_recipe_world()
    for name, options, words in [("knn", {"k": 0}, "'k' must be at least 1"),
                                 ("lp-ft", {"probe_fraction": 1.5}, "'probe_fraction' must be in [0, 1]"),
                                 ("linear-probe", {"lr": -1.0}, "'lr' must be positive")]:
        with pytest.raises(UserError, match=words.replace("[", r"\[").replace("]", r"\]")):
            host.recipes().get(name).factory(world.request, **options)

    class Torchrun:
        active, main, world = True, True, 2

    request = RecipeRequest(**{**world.request.__dict__, "rank": Torchrun()})
    for name in ("linear-probe", "knn", "lp-ft"):
        with pytest.raises(UserError, match=f"recipe '{name}' does not run under torchrun"):
            host.recipes().get(name).factory(request)


def test_the_recipe_is_part_of_the_run_identity():
    fields = identity_fields(RunConfig(recipe="lp-ft", recipe_options={"probe_fraction": 0.3}).to_dict())
    assert fields["recipe"] == "lp-ft" and fields["recipe_options"] == {"probe_fraction": 0.3}
    assert identity_fields(RunConfig().to_dict())["recipe"] == "finetune"


# -- before torch --------------------------------------------------------------------------------------
_WRAPPER = """
import sys
sys.argv = ["vecaf-bench", *sys.argv[1:]]
try:
    from vecaf_bench.cli import main
    main()
finally:
    print("HEAVY " + ",".join(m for m in ("torch", "timm") if m in sys.modules), file=sys.stderr)
"""


def _refused(tmp_path, *args: str) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "COLUMNS": "200"}
    p = subprocess.run([sys.executable, "-c", _WRAPPER, *args], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "HEAVY \n" in p.stderr or p.stderr.rstrip().endswith("HEAVY"), f"torch imported before refusing: {p.stderr}"
    assert "Traceback" not in p.stderr and not any(tmp_path.iterdir())
    return " ".join(p.stderr.split())


def test_an_unknown_recipe_gets_its_closest_name_before_torch(tmp_path):
    msg = _refused(tmp_path, "run", "--set", "recipe=linear-prob")
    assert "unknown recipe 'linear-prob'; known: finetune, knn, linear-probe, lp-ft." in msg
    assert "Did you mean 'linear-probe'?" in msg


def test_a_bad_recipe_option_is_refused_before_torch(tmp_path):
    msg = _refused(tmp_path, "run", "--set", "recipe=lp-ft", "--set", "recipe_options.probe_fractoin=0.3")
    assert "recipe 'lp-ft' does not take option(s) 'probe_fractoin'" in msg and "Did you mean 'probe_fraction'?" in msg
    msg = _refused(tmp_path, "run", "--set", "recipe=knn", "--set", "recipe_options.k=many")
    assert "recipe 'knn' option 'k' must be a whole number (int), got 'many'" in msg


def test_list_shows_the_recipes(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    r = cli("list", "recipes")
    assert r.exit_code == 0, r.output
    for name in RECIPES:
        assert name in r.output
    assert "vecaf_bench_plugins.recipes.lp_ft" in r.output


# -- end to end on digits ------------------------------------------------------------------------------
@contextmanager
def _captured(stop_at: int | None = None):
    """The trainers the runner builds (with the model's weights when built and after every step)."""
    made: list[dict[str, Any]] = []
    build = runner_module.make_trainer

    def make(*args: Any) -> Any:
        trainer = build(*args)
        seen = {"trainer": trainer, "initial": _weights(trainer.model), "steps": {}}
        made.append(seen)
        train_round = trainer.train_round

        def wrapped(*round_args: Any) -> None:
            *rest, after_step = round_args

            def after(step: int, loss: float) -> None:
                seen["steps"][step] = _weights(trainer.model)
                after_step(step, loss)
                if step == stop_at:
                    raise KeyboardInterrupt  # what Ctrl-C is to the runner

            train_round(*rest, after)

        trainer.train_round = wrapped
        return trainer

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner_module, "make_trainer", make)
        yield made


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _changed(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], head: bool) -> list[str]:
    return [k for k in a if k.startswith("classifier.") == head and not torch.equal(a[k], b[k])]


def test_linear_probe_trains_the_head_alone_and_resumes_exactly(cli, tmp_path):
    from vecaf_bench.train import evaluate

    args = [*TINY, "--set", "recipe=linear-probe", "--set", "recipe_options.lr=0.5"]
    with _captured() as made:
        r = cli("run", *args, "--out", tmp_path / "straight")
    assert r.exit_code == 0, r.output
    s = summary_of(tmp_path / "straight")
    assert s["recipe"] == "linear-probe" and s["recipe_options"] == {"lr": 0.5} and s["steps"] == 6
    assert s["identity"]["recipe"] == "linear-probe"
    assert s["compute"]["train_images"] == 0 and made[0]["trainer"].head_rows == 6 * 16
    seen = made[0]
    end = seen["steps"][6]
    assert _changed(seen["initial"], end, head=False) == []  # backbone weights and BatchNorm statistics
    assert sorted(_changed(seen["initial"], end, head=True)) == ["classifier.bias", "classifier.weight"]
    assert s["test_top1"] > 20.0, s["curve"]  # 10 classes
    # the whole model's forward on the validation images agrees with the curve (which the evaluator may
    # read off cached features): the cached features are what the head reads
    trainer = seen["trainer"]
    from vecaf_bench.data import with_validation
    from vecaf_bench.run.setup import load_dataset
    from vecaf_bench.transforms import Normalize, data_config_for, eval_transform

    cfg = RunConfig(dataset="digits", image_size=32)
    splits = with_validation(load_dataset(PluginHost(), cfg), cfg.val_fraction)
    dcfg = data_config_for(PluginHost().backbones().get("timm").factory("tf_efficientnet_lite0").data_config, 32)
    on_images = evaluate(trainer.model, splits.val, eval_transform(dcfg), Normalize(dcfg, torch.device("cpu")), 64, 0)
    assert abs(on_images["top1"] - s["val_top1"]) < 0.8, (on_images, s["val_top1"])  # one image of 143

    with _captured(stop_at=3):
        stopped = cli("run", *args, "--out", tmp_path / "stopped")
    assert stopped.exit_code == 130, stopped.output
    run_dir = run_dirs(tmp_path / "stopped")[0]
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"
    resumed = cli("run", "--resume", run_dir)
    assert resumed.exit_code == 0, resumed.output
    done = json.loads((run_dir / "summary.json").read_text())
    assert done["status"] == "finished" and done["steps"] == 6
    assert [(p["step"], p["top1"], p["train_loss"]) for p in done["curve"]] == [
        (p["step"], p["top1"], p["train_loss"]) for p in s["curve"]]
    assert done["test_top1"] == s["test_top1"]


def test_knn_fits_nothing_and_classifies_well_above_chance(cli, tmp_path):
    with _captured() as made:
        r = cli("run", *TINY, "--set", "recipe=knn", "--out", tmp_path)
    assert r.exit_code == 0, r.output
    s = summary_of(tmp_path)
    assert s["recipe"] == "knn" and s["steps"] == 6 and s["compute"]["train_images"] == 0
    assert [p["step"] for p in s["curve"]] == [3, 6]
    assert s["curve"][0]["top1"] == s["curve"][1]["top1"] and all(p["train_loss"] == 0.0 for p in s["curve"])
    assert s["test_top1"] > 35.0, s["curve"]  # 10 classes: chance is 10%
    seen = made[0]
    assert _changed(seen["initial"], seen["steps"][6], head=False) == []
    assert _changed(seen["initial"], seen["steps"][6], head=True) == []  # the kNN head is a hook


def test_lp_ft_probes_with_the_backbone_frozen_then_finetunes(cli, tmp_path):
    with _captured() as made:
        r = cli("run", *TINY, "--batch-budget", "4", "--eval-every", "2", "--set", "recipe=lp-ft",
                "--set", "recipe_options.probe_fraction=0.5", "--out", tmp_path)
    assert r.exit_code == 0, r.output
    s = summary_of(tmp_path)
    assert s["recipe"] == "lp-ft" and s["steps"] == 4 and s["compute"]["train_images"] == 2 * 16
    seen = made[0]
    assert seen["trainer"].head_rows == 2 * 16
    for step in (1, 2):
        assert _changed(seen["initial"], seen["steps"][step], head=False) == [], step
        assert _changed(seen["initial"], seen["steps"][step], head=True), step
    assert _changed(seen["steps"][2], seen["steps"][3], head=False)  # step 3 finetunes the backbone


def test_finetune_is_the_default_recipe(cli, tmp_path):
    r = cli("run", *TINY, "--batch-budget", "1", "--eval-every", "0", "--out", tmp_path)
    assert r.exit_code == 0, r.output
    s = summary_of(tmp_path)
    assert s["recipe"] == "finetune" and s["recipe_options"] == {} and s["compute"]["train_images"] == 16
    assert np.isfinite(s["test_top1"])


def test_a_model_using_selector_under_a_frozen_backbone_reads_the_cached_features(cli, tmp_path):
    """vecaf's round-1 loss weights need the model's logits on the pool: with the backbone frozen
    they are the head on the cached pool features, the same numbers as a forward over the images,
    and no image passes the backbone for them (so none is counted)."""
    from vecaf_bench.run.outputs import head_outputs, pool_forward
    from vecaf_bench.run.setup import load_dataset
    from vecaf_bench.transforms import Normalize, data_config_for, eval_transform

    with _captured() as made:
        r = cli("run", *TINY, "--selector", "vecaf", "--rounds", "2", "--set", "recipe=linear-probe",
                "--set", "recipe_options.lr=0.5", "--out", tmp_path)
    assert r.exit_code == 0, r.output
    s = summary_of(tmp_path)
    assert s["rounds"][1]["stats"]["weights"] == "loss"
    assert s["selection_forward_batches"] == 0 and s["compute"]["selection_images"] == 0

    trainer = made[0]["trainer"]
    host = PluginHost()
    backbone = host.backbones().get("timm").factory("tf_efficientnet_lite0")
    dcfg = data_config_for(backbone.data_config, 32)
    pool = load_dataset(host, RunConfig(dataset="digits", image_size=32)).pool
    idx = np.arange(0, len(pool), 7)
    norm = Normalize(dcfg, torch.device("cpu"))
    seen, _ = pool_forward(trainer.model, backbone, pool, idx, eval_transform(dcfg), norm, 64, 0,
                           frozenset({"logits", "embeddings"}))
    feats = np.zeros((len(pool), seen["embeddings"].shape[1]), np.float32)
    feats[idx] = seen["embeddings"]
    read = head_outputs(trainer.feature_head(), feats, idx, torch.device("cpu"), 64, frozenset({"logits"}))
    np.testing.assert_allclose(read["logits"], seen["logits"], rtol=1e-4, atol=1e-4)

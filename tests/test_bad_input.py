"""Every bad input: a one-paragraph message naming the thing and what to do, exit 2, no traceback."""

import os

import numpy as np
import pytest
import torch
from conftest import TINY
from PIL import Image


def assert_user_error(result, *fragments):
    text = result.output
    assert result.exit_code == 2, text
    assert "Traceback" not in text
    for frag in fragments:
        assert frag in text, f"{frag!r} not in {text!r}"


def test_unknown_selector_lists_known_and_suggests(cli, tmp_path):
    r = cli("run", "--selector", "coresett", "--out", tmp_path)
    assert_user_error(r, "unknown selector 'coresett'", "known: ", "coreset, coreset-model, entropy, full, kmeans",
                      "Did you mean 'coreset'?")


def test_unknown_backbone_family_and_model(cli, tmp_path):
    r = cli("run", "--backbone", "tim:resnet18", "--out", tmp_path)
    assert_user_error(r, "unknown backbone 'tim'", "Did you mean 'timm'?")
    r = cli("run", "--backbone", "resnet181", "--out", tmp_path)
    assert_user_error(r, "unknown timm model 'resnet181'", "Did you mean")


def test_unknown_dataset(cli, tmp_path):
    r = cli("run", "--dataset", "mnits", "--out", tmp_path)
    assert_user_error(r, "unknown dataset 'mnits'", "Did you mean 'mnist'?", "ImageNet layout")


def test_missing_dataset_folder(cli, tmp_path):
    r = cli("run", "--dataset", tmp_path / "nope", "--out", tmp_path / "o")
    assert_user_error(r, f"dataset folder '{tmp_path / 'nope'}' does not exist")


def test_empty_dataset_folder(cli, tmp_path):
    (tmp_path / "data" / "cat").mkdir(parents=True)
    (tmp_path / "data" / "dog").mkdir(parents=True)
    r = cli("run", "--dataset", tmp_path / "data", "--out", tmp_path / "o")
    assert_user_error(r, "but no image files")
    (tmp_path / "empty").mkdir()
    r = cli("run", "--dataset", tmp_path / "empty", "--out", tmp_path / "o")
    assert_user_error(r, "holds no class sub-folders")


def _folder_with_corrupt(root):
    rng = np.random.default_rng(0)
    for c in ("n01", "n02"):
        (root / c).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    bad = root / "n01" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    return bad


def test_corrupt_image_fatal_names_path(cli, tmp_path):
    bad = _folder_with_corrupt(tmp_path / "data")
    r = cli("run", "--dataset", tmp_path / "data", "--on-corrupt", "error", "--out", tmp_path / "o")
    assert_user_error(r, str(bad), "--on-corrupt skip")


@pytest.mark.parametrize("budget,msg", [("0", "must be positive"), ("-5", "must be positive"),
                                        ("5000", "larger than the pool (1295 images)")])
def test_label_budgets_refused(cli, tmp_path, budget, msg):
    r = cli("run", "--dataset", "digits", "--label-budget", budget, "--out", tmp_path)
    assert_user_error(r, msg)


def test_batch_budget_zero(cli, tmp_path):
    r = cli("run", "--batch-budget", "0", "--out", tmp_path)
    assert_user_error(r, "batch budget must be at least 1")


def test_yaml_errors_through_cli(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("selector: random\n  seed: 1\n")
    assert_user_error(cli("run", "--config", bad), "is not valid YAML at line")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("selecter: random\n")
    assert_user_error(cli("run", "--config", unknown), "unknown config key 'selecter'", "Did you mean 'selector'?")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_device_cuda_without_gpu(cli, tmp_path):
    assert_user_error(cli("run", "--device", "cuda", "--out", tmp_path), "--device cuda", "no CUDA GPU",
                      "--device cpu")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; tested with a file in the way instead")
def test_unwritable_out_permissions(cli, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    assert_user_error(cli("run", *TINY, "--out", ro / "x"), "is not writable")


def test_unwritable_out(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    assert_user_error(cli("run", *TINY, "--out", blocker / "runs"), f"--out '{blocker / 'runs'}' is not writable")


def test_selector_option_unknown(cli, tmp_path):
    r = cli("run", *TINY, "--selector", "coreset", "--set", "selector_options.chunks=4", "--out", tmp_path)
    assert_user_error(r, "selector 'coreset' does not take option(s) 'chunks'", "accepts: chunk")


BROKEN = '''
import numpy as np
from vecaf_bench.api import hookimpl


class Dupes:
    uses = frozenset()
    def select(self, ctx, count):
        return [0] * count


class OutOfRange:
    uses = frozenset()
    def select(self, ctx, count):
        return list(range(ctx.pool_size, ctx.pool_size + count))


class TooFew:
    uses = frozenset()
    def select(self, ctx, count):
        return np.arange(count - 1)


@hookimpl
def vecaf_bench_add_selectors():
    return {"dupes": Dupes, "outofrange": OutOfRange, "toofew": TooFew}
'''


@pytest.mark.parametrize("name,msg", [("dupes", "returned duplicates"),
                                      ("outofrange", "returned indices outside the pool [0, 1295)"),
                                      ("toofew", "returned 29 indices where 30 were asked for")])
def test_plugin_breaking_the_selector_contract_is_named(cli, tmp_path, monkeypatch, name, msg):
    (tmp_path / "broken_selectors.py").write_text(BROKEN)
    monkeypatch.syspath_prepend(str(tmp_path))
    r = cli("run", *TINY, "--plugin", "broken_selectors", "--selector", name, "--out", tmp_path / "o")
    assert_user_error(r, f"selector '{name}' broke the selector contract", msg, "stopped before training")


def test_plugin_module_that_does_not_import(cli, tmp_path):
    assert_user_error(cli("run", "--plugin", "no_such_module_xyz", "--out", tmp_path),
                      "--plugin 'no_such_module_xyz' could not be imported")


def test_batch_size_one_with_batchnorm_is_refused_before_training(cli, tmp_path):
    r = cli("run", "--dataset", "digits", "--batch-size", "1", "--batch-budget", "2", "--image-size", "32",
            "--out", tmp_path)
    assert r.exit_code == 2
    text = " ".join(r.output.split())
    assert "batch size 1 is too small for timm:tf_efficientnet_lite0" in text and "--batch-size 2" in text
    assert "Traceback" not in r.output and not list(tmp_path.iterdir())  # no half-made run folder


@pytest.mark.parametrize(
    "value, fragments",
    [
        ("nosuch", ["unknown selector 'nosuch'", "cold_start's value"]),
        ("vecaf", ["cold_start 'vecaf' cannot pick round 0", "needs a trained model"]),
        ("full", ["cold_start 'full' cannot pick round 0", "takes the whole pool"]),
    ],
)
def test_cold_start_that_cannot_pick_round_zero(cli, tmp_path, value, fragments):
    r = cli("run", *TINY, "--set", f"cold_start={value}", "--out", tmp_path)
    assert_user_error(r, *fragments)
    assert not list(tmp_path.iterdir())

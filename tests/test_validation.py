"""The validation split: carved from the pool, fixed across seeds, never seen by a selector,
and what summary.json records of it (the curve's val points, the best-on-validation step)."""

import numpy as np
import pytest
from conftest import TINY, run_dirs, summary_of

from vecaf_bench.data import ArrayImages, DatasetSplits, with_validation


def _splits(labels, val=None) -> DatasetSplits:
    labels = np.asarray(labels)
    pixels = np.zeros((len(labels), 4, 4), dtype=np.uint8)
    pixels[:, 0, 0] = np.arange(len(labels)) % 256
    whole = ArrayImages(pixels, labels, "toy")
    return DatasetSplits(name="toy", pool=whole, test=whole.subset(np.arange(3), "test"), classes=["a", "b", "c"],
                         val=val)


def test_the_validation_split_is_a_stratified_share_of_the_pool_held_out_of_it():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    s = with_validation(_splits(labels), 0.1)
    assert len(s.pool) + len(s.val) == 100
    assert np.bincount(s.val.labels).tolist() == [5, 3, 2]  # a tenth of every class
    base, kept = s.carved_from
    held = np.setdiff1d(np.arange(100), kept)
    assert np.array_equal(base.pixels[kept], s.pool.pixels) and np.array_equal(base.pixels[held], s.val.pixels)
    assert s.info["val"] == {"size": 10, "fraction": 0.1, "seed": 0, "source": "carved from the pool"}
    # a new pool is a new feature-cache entry, and pool and validation never share a fingerprint
    assert len({s.pool.fingerprint, s.val.fingerprint, base.fingerprint}) == 3
    # the same fraction gives the same split whatever else happens (run seeds never move it)
    again = with_validation(_splits(labels), 0.1)
    assert np.array_equal(again.carved_from[1], kept)


def test_no_validation_split_with_fraction_0_and_the_datasets_own_is_kept():
    labels = np.repeat([0, 1, 2], 10)
    off = with_validation(_splits(labels), 0.0)
    assert off.val is None and len(off.pool) == 30 and off.info["val"] is None
    own = ArrayImages(np.zeros((4, 4, 4), np.uint8), np.array([0, 1, 2, 0]), "own-val")
    s = with_validation(_splits(labels, val=own), 0.1)
    assert s.val is own and len(s.pool) == 30 and s.info["val"]["source"] == "dataset"


@pytest.mark.slow
def test_a_run_reads_its_decisions_off_the_validation_split(cli, tmp_path):
    r = cli("run", *TINY, "--out", tmp_path / "a")
    assert r.exit_code == 0, r.output
    s = summary_of(tmp_path / "a")
    assert s["val"]["size"] == s["val_size"] == 143 and s["pool_size"] == 1295  # digits' 1438 pool images, less 10%
    assert "val 143" in r.output and "best on val" in r.output
    curve = s["curve"]
    assert all({"val_top1", "val_top5", "val_loss"} <= set(p) for p in curve)
    best = max(curve, key=lambda p: p["val_top1"])
    assert s["best"]["step"] == best["step"] and s["best"]["test_top1"] == best["top1"]
    assert s["val_top1"] == curve[-1]["val_top1"]
    # compute as images processed: training passes, and evaluation of val + test at every point
    assert s["compute"]["train_images"] == s["steps"] * s["batch_size"]
    assert s["compute"]["eval_images"] == len(curve) * (s["val_size"] + s["test_size"])

    off = cli("run", *TINY, "--set", "val_fraction=0", "--out", tmp_path / "b")
    assert off.exit_code == 0, off.output
    s0 = summary_of(tmp_path / "b")
    assert s0["val"] is None and s0["best"] is None and s0["pool_size"] == 1438
    assert "no validation split" in off.output and all("val_top1" not in p for p in s0["curve"])


def test_a_bad_val_fraction_is_refused_before_anything_runs(cli, tmp_path):
    r = cli("run", *TINY, "--set", "val_fraction=1", "--out", tmp_path)
    assert r.exit_code == 2
    assert "val_fraction must be in [0, 1) (0: no validation split), got 1" in r.output


STOPS_AT_6 = '''
from vecaf_bench.api import hookimpl

class StopsAt6:
    def __init__(self, config, run_dir):
        pass
    @hookimpl
    def vecaf_bench_evaluate(self, run, step, metrics):
        if step == 6:
            raise KeyboardInterrupt

@hookimpl
def vecaf_bench_add_trackers():
    return {"stops_at_6": StopsAt6}
'''
# lr 0.5 on digits: the best validation step tends to come before the final one (on 2 threads: step
# 6 of 8), so that the test split is measured on kept weights; test_evaluator_* pins that case down
NO_TEST_CURVE = ["--dataset", "digits", "--label-budget", "30", "--batch-budget", "8", "--batch-size", "16",
                 "--eval-every", "2", "--image-size", "32", "--set", "train.lr=0.5"]


@pytest.mark.slow
def test_without_a_test_curve_the_final_and_best_numbers_are_the_same(cli, tmp_path, monkeypatch):
    full = cli("run", *NO_TEST_CURVE, "--out", tmp_path / "a")
    assert full.exit_code == 0, full.output
    lean = cli("run", *NO_TEST_CURVE, "--set", "test_curve=false", "--out", tmp_path / "b")
    assert lean.exit_code == 0, lean.output
    a, b = summary_of(tmp_path / "a"), summary_of(tmp_path / "b")
    assert b["best"] == a["best"] and b["test_top1"] == a["test_top1"] and b["test_top5"] == a["test_top5"]
    assert [p["val_top1"] for p in b["curve"]] == [p["val_top1"] for p in a["curve"]]
    # the test split was measured at the best step and the last one only, with the same numbers
    measured = {p["step"]: p["top1"] for p in b["curve"] if "top1" in p}
    test_at = {p["step"]: p["top1"] for p in a["curve"]}
    assert measured == {s: test_at[s] for s in (a["best"]["step"], 8)}
    assert b["compute"]["eval_images"] == a["compute"]["eval_images"] - (4 - len(measured)) * a["test_size"]
    assert b["identity_hash"] == a["identity_hash"]  # one method on the board
    assert "curve (step: val top-1)" in lean.output

    # stopped right after the best step: its weights wait in the checkpoint, the resume measures them
    (tmp_path / "stops_at_6.py").write_text(STOPS_AT_6)
    monkeypatch.syspath_prepend(str(tmp_path))
    stopped = cli("run", *NO_TEST_CURVE, "--set", "test_curve=false", "--plugin", "stops_at_6",
                  "--set", "trackers=[stops_at_6]", "--out", tmp_path / "c")
    assert stopped.exit_code == 130, stopped.output
    resumed = cli("run", "--resume", run_dirs(tmp_path / "c")[0])
    assert resumed.exit_code == 0, resumed.output
    c = summary_of(tmp_path / "c")
    assert c["best"] == a["best"] and c["test_top1"] == a["test_top1"]


def test_evaluator_measures_the_test_split_on_the_best_steps_weights_and_keeps_them_in_checkpoints(monkeypatch):
    """A stand-in model whose weight is its accuracy: validation peaks at step 2 of 4, so the test
    split is measured at the end on step 2's weights (restored for it, then put back), and a
    checkpoint taken in between carries those weights to a resumed evaluator."""
    import torch

    from vecaf_bench.run import evaluation

    def fake_evaluate(model, source, *args, **kwargs):
        w = float(model.weight.detach().reshape(-1)[0])
        return {"top1": w * (10.0 if source == "test" else 1.0), "top5": 100.0, "loss": 0.0}

    monkeypatch.setattr(evaluation, "evaluate", fake_evaluate)
    normalize = type("N", (), {"device": torch.device("cpu")})()

    def make():
        return evaluation.Evaluator(model, "test", [], None, normalize, 8, 0, 0, 4, val="val", test_curve=False)

    model = torch.nn.Linear(1, 1, bias=False)
    ev = make()
    for step, w in ((1, 1.0), (2, 3.0)):
        with torch.no_grad():
            model.weight.fill_(w)
        ev(step, [])
    saved = ev.state_dict()
    assert [("top1" in p) for p in saved["curve"]] == [False, False] and saved["best_weights"] is not None
    resumed = make()
    resumed.restore(saved["curve"], saved["ood_curves"], saved["best_weights"])
    for step, w in ((3, 2.0), (4, 2.5)):
        with torch.no_grad():
            model.weight.fill_(w)
        resumed(step, [])
    assert {p["step"]: p.get("top1") for p in resumed.curve} == {1: None, 2: 30.0, 3: None, 4: 25.0}
    assert resumed.best() == {"step": 2, "val_top1": 3.0, "test_top1": 30.0, "test_top5": 100.0}
    assert float(model.weight.detach()) == 2.5 and resumed.best_weights is None  # the final weights are back

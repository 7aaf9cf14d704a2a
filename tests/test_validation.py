"""The validation split: carved from the pool, fixed across seeds, never seen by a selector,
and what summary.json records of it (the curve's val points, the best-on-validation step)."""

import numpy as np
import pytest
from conftest import TINY, summary_of

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

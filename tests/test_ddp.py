"""torchrun: two processes (gloo, CPU) make the same run as one.

ConvNeXt has no BatchNorm, and augmentation is off, so the two-process step is the one-process
step up to float summation order: the same selection, the same features, the same accuracy. (On
GPUs BatchNorm layers are made SyncBatchNorm; on the CPU torch has no SyncBatchNorm, so BN models
see each rank's slice of the batch there.)
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from vecaf_bench import distributed as dist
from vecaf_bench.errors import UserError

RUN = ["run", "--dataset", "digits", "--label-budget", "30", "--batch-budget", "6", "--batch-size", "16",
       "--eval-every", "3", "--image-size", "32", "--backbone", "timm:convnext_atto", "--weights", "none",
       "--set", "train.augment=false", "--selector", "activeft", "--wandb-mode", "disabled"]


def _run(tmp_path, name: str, procs: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    args = [*RUN, "--out", str(tmp_path / name / "out"), "--cache-dir", str(tmp_path / name / "cache")]
    if procs == 1:
        cmd = [sys.executable, "-m", "vecaf_bench.cli", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs),
               "-m", "vecaf_bench.cli", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)


def _results(tmp_path, name: str):
    dirs = [d for d in (tmp_path / name / "out").iterdir() if d.is_dir()]
    assert len(dirs) == 1, f"one run folder, written by rank 0 alone: {dirs}"
    feats = list((tmp_path / name / "cache" / "features").glob("*.npy"))
    assert len(feats) == 1
    return (json.loads((dirs[0] / "summary.json").read_text()), json.loads((dirs[0] / "selected.json").read_text()),
            np.load(feats[0]))


def test_two_processes_make_the_same_run_as_one(tmp_path):
    one = _run(tmp_path, "one", 1)
    assert one.returncode == 0, one.stderr[-3000:]
    two = _run(tmp_path, "two", 2)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("vecaf-bench run ") == 1, "rank 0 alone prints the summary"
    s1, sel1, f1 = _results(tmp_path, "one")
    s2, sel2, f2 = _results(tmp_path, "two")
    assert s1["world_size"] == 1 and s2["world_size"] == 2
    assert sel2 == sel1, "the same selection"
    assert np.array_equal(f2, f1), "features embedded in shards come back in pool order"
    assert s2["steps"] == s1["steps"] == 6, "a step is one global batch on 1 or 2 processes"
    assert [(p["step"], p["top1"], p["top5"]) for p in s2["curve"]] == [
        (p["step"], p["top1"], p["top5"]) for p in s1["curve"]
    ]
    assert [p["loss"] for p in s2["curve"]] == pytest.approx([p["loss"] for p in s1["curve"]], rel=1e-4)
    assert [p["train_loss"] for p in s2["curve"]] == pytest.approx([p["train_loss"] for p in s1["curve"]], rel=1e-4)


def test_a_batch_that_does_not_split_over_the_processes_is_refused():
    assert dist.check_batch_size(32, 4) == 8
    with pytest.raises(UserError, match=r"batch_size 30 does not split over 4 processes.*divisible by 4 \(e\.g\. 28\)"):
        dist.check_batch_size(30, 4)


def test_one_process_helpers_change_nothing():
    rows = np.arange(12, dtype=np.float32).reshape(6, 2)
    plan = np.arange(12).reshape(3, 4)
    assert not dist.active() and dist.world() == 1 and dist.is_main()
    assert dist.shard(6) is None and dist.gather_rows(rows, 6) is rows and dist.batch_slice(plan) is plan
    assert dist.sum_values([1.0, 2.0]) == [1.0, 2.0] and dist.broadcast({"a": 1}) == {"a": 1}
    assert dist.any_rank(False) is False

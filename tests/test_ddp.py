"""torchrun: two processes (gloo, CPU) make the same run as one.

The end-to-end runs use ConvNeXt-Atto (no BatchNorm) with augmentation on: a step is one global
batch split over the ranks, each image augmented from a seed of (run seed, step, slot), so the
two-process step is the one-process step up to float summation order, and the run is the same.
BatchNorm over the global batch is checked on its own, on a gradient: a few steps of the tiny
EfficientNet runs are chaotic (one process with 1 or 2 CPU threads already ends a few points
apart), so float-order noise, not a wrong gradient, is all an end-to-end run could show there.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from vecaf_bench import distributed as dist
from vecaf_bench import sync_batchnorm
from vecaf_bench.errors import UserError
from vecaf_bench.seeding import sample_seeds, seeded

RUN = ["run", "--dataset", "digits", "--label-budget", "30", "--batch-budget", "6", "--batch-size", "16",
       "--eval-every", "3", "--image-size", "32", "--backbone", "timm:convnext_atto", "--weights", "none",
       "--selector", "coreset", "--wandb-mode", "disabled"]


def _run(tmp_path, name: str, procs: int, cache: str, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(tmp_path)}
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    args = [*RUN, *extra, "--out", str(tmp_path / name / "out"), "--cache-dir", str(tmp_path / cache)]
    if procs == 1:
        cmd = [sys.executable, "-m", "vecaf_bench.cli", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs),
               "-m", "vecaf_bench.cli", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)


def _results(tmp_path, name: str):
    dirs = [d for d in (tmp_path / name / "out").iterdir() if d.is_dir()]
    assert len(dirs) == 1, f"one run folder, written by rank 0 alone: {dirs}"
    return json.loads((dirs[0] / "summary.json").read_text()), json.loads((dirs[0] / "selected.json").read_text())


def _features(tmp_path, cache: str) -> np.ndarray:
    feats = list((tmp_path / cache / "features").glob("*.npy"))
    assert len(feats) == 1, "rank 0 alone writes the feature cache"
    return np.load(feats[0])


@pytest.fixture(scope="module")
def one(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one-process run, made once: its folder holds `one/out` and the feature cache `cache1`."""
    base = tmp_path_factory.mktemp("ddp-one")
    r = _run(base, "one", 1, "cache1")
    assert r.returncode == 0, r.stderr[-3000:]
    return base


def test_two_processes_make_the_same_run_as_one(tmp_path, one):
    two = _run(tmp_path, "two", 2, "cache2")
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("vecaf-bench run ") == 1, "rank 0 alone prints the summary"
    assert two.stderr.count("features: extracted") == 1, "rank 0 alone logs"
    s1, sel1 = _results(one, "one")
    s2, sel2 = _results(tmp_path, "two")
    assert s1["world_size"] == 1 and s2["world_size"] == 2
    np.testing.assert_allclose(_features(tmp_path, "cache2"), _features(one, "cache1"), rtol=1e-5, atol=1e-6,
                               err_msg="features embedded in shards come back in pool order")
    assert sel2 == sel1, "the same selection"
    assert s2["steps"] == s1["steps"] == 6, "a step is one global batch on 1 or 2 processes"
    # measured: every top-1/top-5 equal, losses equal to 1e-6; 0.5 points allows one of the 359 test
    # images to flip its argmax under another float summation order (another CPU, another BLAS)
    assert abs(s2["test_top1"] - s1["test_top1"]) <= 0.5
    assert [p["top1"] for p in s2["curve"]] == pytest.approx([p["top1"] for p in s1["curve"]], abs=0.5)
    assert [p["loss"] for p in s2["curve"]] == pytest.approx([p["loss"] for p in s1["curve"]], rel=1e-3)
    assert [p["train_loss"] for p in s2["curve"]] == pytest.approx([p["train_loss"] for p in s1["curve"]], rel=1e-3)


BROKEN = '''
from vecaf_bench.api import hookimpl


class Dupes:
    uses = frozenset()
    def select(self, ctx, count):
        return [0] * count


@hookimpl
def vecaf_bench_add_selectors():
    return {"dupes": Dupes}
'''


def test_an_error_on_one_rank_stops_every_rank(tmp_path, one):
    """Rank 0's selector fails while rank 1 waits for the picks: rank 0 names the error, rank 1 says
    in a line that a peer stopped, and torchrun ends with a failure instead of waiting forever.
    The two processes read the feature cache one process wrote (rank 0 alone reads and says so)."""
    (tmp_path / "broken_ddp_selectors.py").write_text(BROKEN)
    t0 = time.time()
    r = _run(tmp_path, "broken", 2, str(one / "cache1"), "--plugin", "broken_ddp_selectors", "--selector", "dupes")
    assert r.returncode != 0
    assert time.time() - t0 < 120
    assert r.stderr.count("features: reused cache") == 1, r.stderr[-3000:]
    assert r.stderr.count("selector 'dupes' broke the selector contract") == 1, r.stderr[-3000:]
    assert "process 1 of 2: a collective with the other processes failed" in r.stderr
    assert "Traceback (most recent call last)" not in r.stderr.split("torch/distributed/elastic")[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bn_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=10)  # BatchNormAct2d layers


def _bn_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(16, 3, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g)


def _grads_and_stats(m: torch.nn.Module) -> np.ndarray:
    return torch.cat([p.grad.flatten() for p in m.parameters()] + [b.double().flatten() for b in m.buffers()]).numpy()


def _bn_worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    x, y = _bn_batch()
    x = x.double()
    for synced in (True, False):
        model = _bn_model().double()
        if synced:
            model, skipped = sync_batchnorm.convert(model, "cpu")
            assert not skipped
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        torch.nn.functional.cross_entropy(ddp(x[rank * 8 : rank * 8 + 8]), y[rank * 8 : rank * 8 + 8]).backward()
        if rank == 0:
            np.save(f"{out}-{int(synced)}.npy", _grads_and_stats(model))
    torch.distributed.destroy_process_group()


def test_batchnorm_over_two_processes_is_the_global_batchs(tmp_path):
    """Two gloo processes of 8 images give the gradient and running statistics of one batch of 16.

    In float64: in float32 the two computations differ by rounding (2e-5 here), and one
    activation of EfficientNet's head lies 4e-5 from ReLU6's kink on one machine, so rounding
    flips its mask and moves the gradient by 3e-3: a comparison in float32 tests the machine."""
    model = _bn_model().double()
    x, y = _bn_batch()
    torch.nn.functional.cross_entropy(model(x.double()), y).backward()
    one = _grads_and_stats(model)
    torch.multiprocessing.spawn(_bn_worker, args=(_free_port(), str(tmp_path / "g")), nprocs=2)
    synced, plain = np.load(tmp_path / "g-1.npy"), np.load(tmp_path / "g-0.npy")
    err = np.linalg.norm(synced - one) / np.linalg.norm(one)
    assert err < 1e-9, f"measured 2e-13, float64's own rounding: {err}"
    assert np.linalg.norm(plain - one) / np.linalg.norm(one) > 1e-2, "the check tells per-rank statistics apart"


def test_conversion_keeps_every_layer_and_timms_activation():
    model = _bn_model().eval()
    x, _ = _bn_batch()
    ref = model(x)
    keys = list(model.state_dict())
    for device_type in ("cuda", "cpu"):  # torch's/timm's SyncBatchNorm(Act) for GPUs; in place on the CPU
        converted, skipped = sync_batchnorm.convert(_bn_model().eval(), device_type)
        assert not skipped and list(converted.state_dict()) == keys
        kinds = {type(m).__name__ for m in converted.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
        assert kinds == ({"SyncBatchNormAct"} if device_type == "cuda" else {"CpuSyncBatchNormAct2d"})
        assert torch.equal(converted(x), ref), "torch's own converter would drop BatchNormAct2d's activation"


def test_a_batch_that_does_not_split_over_the_processes_is_refused():
    assert dist.check_batch_size(32, 4) == 8
    with pytest.raises(UserError, match=r"batch_size 30 does not split over 4 processes.*divisible by 4 \(e\.g\. 28\)"):
        dist.check_batch_size(30, 4)


def test_augmentation_seeds_depend_on_the_slot_not_the_process():
    a, b = sample_seeds(0, 5, 16), sample_seeds(0, 5, 16)
    assert np.array_equal(a, b) and len(set(a.tolist())) == 16
    assert not np.array_equal(sample_seeds(0, 6, 16), a) and not np.array_equal(sample_seeds(1, 5, 16), a)
    before = torch.get_rng_state()
    with seeded(int(a[3])):
        first = torch.rand(3)
    with seeded(int(a[3])):
        assert torch.equal(torch.rand(3), first)
    assert torch.equal(torch.get_rng_state(), before), "torch's global stream is left as it was"


def test_one_process_helpers_change_nothing():
    rows = np.arange(12, dtype=np.float32).reshape(6, 2)
    plan = np.arange(12).reshape(3, 4)
    assert not dist.active() and dist.world() == 1 and dist.is_main()
    out = np.zeros_like(rows)
    dist.gather_rows(rows, 6, out)
    assert np.array_equal(out, rows)
    assert dist.shard(6) is None and dist.batch_slice(plan) is plan
    assert dist.sum_values([1.0, 2.0]) == [1.0, 2.0] and dist.broadcast({"a": 1}) == {"a": 1}
    assert dist.any_rank(False) is False

"""bilaf: the core count, the budget split, the denoising, the boundary picks on real data (digits),
the options, the kit and (slow) the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY, summary_of
from sklearn.datasets import load_digits

from vecaf_bench.api import Capabilities, UserError
from vecaf_bench.run.selection_round import build_context
from vecaf_bench.testing import check_selector
from vecaf_bench_plugins.selectors.bilaf import BiLAF, apportion, core_count, denoise, nearest_cores

DIGITS = load_digits()
FAST = {"core_iterations": 40}  # ActiveFT's 300 iterations are its own tests' business


def _ctx(seed=0, selected=(), num_classes=10):
    return build_context(
        selector="bilaf",
        capabilities=Capabilities(),
        features=DIGITS.data.astype(np.float32),
        seed=seed,
        selected=np.asarray(selected, dtype=np.int64),
        num_classes=num_classes,
    )


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_core_count_follows_the_paper_with_a_floor_and_a_cap():
    assert core_count(50_000, 500, 10, None, None) == 50  # CIFAR-10: 0.1%
    assert core_count(50_000, 1000, 100, None, None) == 250  # CIFAR-100: 0.5%
    assert core_count(1_281_167, 25_000, 1000, None, None) == 6406  # ImageNet: 0.5%
    assert core_count(1_500, 30, 10, None, None) == 10, "at least one core per class"
    assert core_count(1_500, 6, 10, None, None) == 5, "fewer cores than picks"
    assert core_count(1_500, 1, 10, None, None) == 1
    assert core_count(1_500, 30, 0, 0.01, None) == 15 and core_count(1_500, 30, 10, None, 7) == 7


def test_apportion_is_proportional_within_one():
    rng = np.random.default_rng(0)
    for _ in range(50):
        sizes = rng.integers(1, 200, size=rng.integers(1, 30))
        capacity = sizes + rng.integers(0, 20, size=len(sizes))
        count = int(rng.integers(len(sizes), capacity.sum() + 1))
        alloc = apportion(count, sizes, capacity)
        assert alloc.sum() == count and np.all(alloc >= 1) and np.all(alloc <= capacity)
        if count <= sizes.sum() and np.all(count * sizes / sizes.sum() >= 1) and np.all(alloc < capacity):
            assert np.all(np.abs(alloc - count * sizes / sizes.sum()) < 1 + 1e-9)


def test_denoising_drops_the_outliers_and_keeps_the_dense_part():
    rng = np.random.default_rng(1)
    dense = rng.normal(scale=0.1, size=(90, 8))
    far = rng.normal(scale=0.1, size=(10, 8)) + 5.0 * rng.normal(size=(10, 8))
    x = torch.from_numpy(np.concatenate([dense, far]).astype(np.float32))
    kept = denoise(x, core=0, knn=10, remove=0.1, growth=0.1, chunk=16)
    assert len(kept) == 90 and len(set(kept.tolist())) == 90
    assert set(kept.tolist()) == set(range(90)), "the 10 scattered points are the noise"
    assert len(denoise(x[:8], core=0, knn=10, remove=0.1, growth=0.1, chunk=16)) == 8, "small classes kept"


def test_picks_on_digits_cores_first_and_budget_per_pseudo_class():
    sel = BiLAF(**FAST, chunk=256)  # blocks smaller than the pool
    got = sel.select(_ctx(), 60)
    picks = got.indices
    assert len(picks) == 60 == len(set(picks.tolist()))
    k = got.stats["cores"]
    assert k == 10 and np.array_equal(picks[:k], sel.core_picks), "the cores are picks, first"
    assert np.all(got.scores[:k] == 2.0) and np.all(got.scores[k:] <= 1.0)
    quota = 60 * sel.denoised_sizes / sel.denoised_sizes.sum()
    for j, members in enumerate(sel.pseudo_classes):
        assert sel.core_picks[j] in members
        mine = np.isin(picks, members).sum()
        assert mine == sel.allocation[j] and abs(mine - quota[j]) < 1 + 1e-9, (j, mine, quota[j])
    assert len(set(DIGITS.target[picks].tolist())) == 10


def test_boundary_picks_sit_nearer_the_other_pseudo_classes():
    """The boundary picks' (nearest other core) / (own core) distance ratio is low: most of them lie
    in the pool's lowest quartile of it (a random set: a quarter), between pseudo-classes.
    (Measured on digits: 84% of them.)"""
    sel = BiLAF(**FAST)
    got = sel.select(_ctx(), 60)
    x = torch.from_numpy(_unit(DIGITS.data).astype(np.float32))
    cores = x[torch.as_tensor(sel.core_picks)]
    label, outer, _ = nearest_cores(x, cores, 512)
    own = (x - cores[label]).norm(dim=1).double()
    ratio = (outer / own.clamp_min(1e-9)).numpy()
    boundary = got.indices[got.stats["cores"] :]
    assert (ratio[boundary] < np.quantile(ratio, 0.25)).mean() >= 0.6


def test_same_seed_same_picks_and_later_rounds():
    a, b = (BiLAF(**FAST).select(_ctx(seed=2), 30).indices for _ in range(2))
    assert np.array_equal(a, b)
    c = BiLAF(**FAST).select(_ctx(seed=3), 30).indices
    assert not np.array_equal(np.sort(a), np.sort(c))
    more = BiLAF(**FAST).select(_ctx(seed=2, selected=a), 30).indices
    assert len(set(more.tolist())) == 30 and not set(more.tolist()) & set(a.tolist())


@pytest.mark.parametrize(
    "bad",
    [{"cores": 0}, {"core_fraction": 1.5}, {"core_iterations": 0}, {"density_k": 0}, {"remove": 1.0},
     {"growth": 0.0}, {"penalty": 0.5}, {"chunk": 0}],
)  # fmt: skip
def test_bad_options_name_the_option(bad):
    with pytest.raises(UserError, match="bilaf " + next(iter(bad))):
        BiLAF(**bad)


def test_bilaf_passes_the_kit():
    check_selector(BiLAF, options=FAST, name="bilaf")


@pytest.mark.slow
def test_bilaf_runs_through_the_cli(cli, tmp_path):
    r = cli("run", "--plugin", "vecaf_bench_plugins.selectors.bilaf", "--selector", "bilaf", *TINY,
            "--out", tmp_path)  # fmt: skip
    assert r.exit_code == 0, r.output
    s = summary_of(tmp_path)
    assert s["selector"] == "bilaf" and s["label_budget"] == 30
    assert s["rounds"][0]["picked"] == 30 and s["rounds"][0]["stats"]["cores"] == 10

"""usl: the chunked kNN against brute force, one pick per cluster, density first, the regulariser's
spread, the options, the kit and (slow) the CLI, on real data (digits)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY, summary_of
from sklearn.datasets import load_digits

from vecaf_bench.api import Capabilities, UserError
from vecaf_bench.run.selection_round import build_context
from vecaf_bench.testing import check_selector
from vecaf_bench_plugins.selectors.usl import USL, knn_sq_dists

DIGITS = load_digits()
UNIT = (DIGITS.data / np.linalg.norm(DIGITS.data, axis=1, keepdims=True)).astype(np.float32)


def _ctx(seed=0, selected=()):
    return build_context(
        selector="usl",
        capabilities=Capabilities(),
        features=DIGITS.data.astype(np.float32),
        seed=seed,
        selected=np.asarray(selected, dtype=np.int64),
    )


def _density(x: np.ndarray, k: int) -> np.ndarray:
    """1 / mean of the k smallest squared distances to the pool (itself included), float64 brute force."""
    f = x.astype(np.float64)
    d2 = np.maximum((f * f).sum(1)[:, None] + (f * f).sum(1)[None, :] - 2 * f @ f.T, 0)
    return 1.0 / np.sort(d2, axis=1)[:, :k].mean(1)


def test_chunked_knn_equals_brute_force():
    x = torch.from_numpy(UNIT)
    got = knn_sq_dists(x[:300], x, 20, chunk=128).numpy()  # blocks smaller than the pool
    f = UNIT.astype(np.float64)
    d2 = np.maximum(2 - 2 * f[:300] @ f.T, 0)
    assert np.allclose(got, np.sort(d2, axis=1)[:, :20], atol=2e-5)
    assert got[:, 0].max() < 1e-5, "each query is its own nearest neighbour"


def test_density_only_takes_the_densest_member_of_each_cluster():
    sel = USL(iterations=1)
    got = sel.select(_ctx(), 30)
    labels = sel.clusters
    rows = np.searchsorted(sel.rows, got.indices)
    assert sorted(labels[rows].tolist()) == list(range(30)), "one pick per cluster"
    density = _density(UNIT, 20)
    for c, r in zip(labels[rows], got.indices, strict=True):
        members = sel.rows[labels == c]
        assert density[r] >= density[members].max() * (1 - 1e-4)


def test_regularised_picks_one_per_cluster_dense_and_spread():
    dense_only = USL(iterations=1).select(_ctx(), 30)
    sel = USL()
    got = sel.select(_ctx(), 30)
    rows = np.searchsorted(sel.rows, got.indices)
    assert len(set(sel.clusters[rows].tolist())) == 30 == len(set(got.indices.tolist()))
    assert got.stats["density_picked"] > 1.2 * got.stats["density_pool"], "denser than average"
    assert len(set(DIGITS.target[got.indices].tolist())) >= 9

    def closest_pair(idx):
        f = UNIT[idx].astype(np.float64)
        d = np.sqrt(np.maximum(2 - 2 * f @ f.T, 0)) + 9 * np.eye(len(idx))
        return d.min(1).mean()

    assert closest_pair(got.indices) > closest_pair(dense_only.indices), "the regulariser spreads the picks"


def test_same_seed_same_picks_and_later_rounds():
    a, b = (USL().select(_ctx(seed=5), 20).indices for _ in range(2))
    assert np.array_equal(a, b)
    assert not np.array_equal(np.sort(a), np.sort(USL().select(_ctx(seed=6), 20).indices))
    more = USL().select(_ctx(seed=5, selected=a), 20).indices
    assert len(set(more.tolist())) == 20 and not set(more.tolist()) & set(a.tolist())


@pytest.mark.parametrize(
    "bad", [{"knn": 0}, {"iterations": 0}, {"lam": -1.0}, {"momentum": 1.0}, {"alpha": -0.5}, {"init": "pp"}]
)
def test_bad_options_name_the_option(bad):
    with pytest.raises(UserError, match="usl " + next(iter(bad))):
        USL(**bad)


def test_usl_passes_the_kit():
    check_selector(USL, name="usl")


@pytest.mark.slow
def test_usl_runs_through_the_cli(cli, tmp_path):
    r = cli("run", "--plugin", "vecaf_bench_plugins.selectors.usl", "--selector", "usl", *TINY,
            "--out", tmp_path)  # fmt: skip
    assert r.exit_code == 0, r.output
    s = summary_of(tmp_path)
    assert s["selector"] == "usl" and s["rounds"][0]["picked"] == 30
    assert s["rounds"][0]["stats"]["empty_clusters"] == 0

"""probcover: the graph and the coverage against dense numpy references, the greedy's guarantee on a
brute-forced case, every row's edges, the auto delta's purity, the kit and one CLI run."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from sklearn.datasets import load_digits

from vecaf_bench.api import Capabilities, UserError
from vecaf_bench.run.selection_round import build_context
from vecaf_bench.testing import check_selector
from vecaf_bench_plugins.selectors.probcover import ProbCover, build_graph, pseudo_labels


def _digits() -> np.ndarray:
    return load_digits().data.astype(np.float32)


def _ctx(feats: np.ndarray, seed: int = 0, selected=(), num_classes: int = 10) -> object:
    return build_context(
        selector="probcover",
        capabilities=Capabilities(),
        features=feats,
        seed=seed,
        selected=np.asarray(selected, dtype=np.int64),
        num_classes=num_classes,
    )


def _dense(ctx) -> np.ndarray:
    """Pairwise distances in float64 of the features the selector sees (L2-normalised)."""
    f = ctx.features_tensor().numpy().astype(np.float64)
    sq = (f * f).sum(1)
    return np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * f @ f.T, 0.0))


def _adjacency(indptr, cols, n) -> np.ndarray:
    a = np.zeros((n, n), dtype=bool)
    ip, c = indptr.numpy(), cols.numpy()
    for i in range(n):
        a[i, c[ip[i] : ip[i + 1]]] = True
    assert len(c) == a.sum(), "no edge twice"
    return a


def test_the_graph_is_the_dense_threshold():
    import torch

    x = _digits()
    ctx = _ctx(x)
    d = _dense(ctx)
    f = ctx.features_tensor()
    for delta, chunk in ((0.3, 512), (0.45, 97)):  # 1797 = 3 x 512 + 261, 18 x 97 + 51
        indptr, cols = build_graph(f, delta, chunk)
        assert np.array_equal(_adjacency(indptr, cols, len(x)), d < delta)
        assert torch.equal(indptr, build_graph(f, delta, 1797)[0])
        bf_indptr, bf_cols = build_graph(f, delta, chunk, bf16=True)  # the band makes bf16 exact too
        assert torch.equal(bf_indptr, indptr) and torch.equal(bf_cols, cols)


def test_every_rows_edges_are_built_when_the_last_block_is_short():
    """1003 rows in blocks of 500: the last 3 rows are their own block. Rows 1001 and 1002 are a pair
    far from everything else: the public code (range(N // 500) blocks) never builds 1002's edges."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1003, 16)).astype(np.float32)
    x[:, 0] = np.abs(x[:, 0])
    x[1001] = np.eye(16, dtype=np.float32)[0] * -1.0
    x[1002] = x[1001] + 0.01 * rng.normal(size=16).astype(np.float32)
    ctx = _ctx(x)
    d = _dense(ctx)
    assert (d[1002] < 0.2).sum() == 2 and d[1001, 1002] < 0.2
    indptr, cols = build_graph(ctx.features_tensor(), 0.2, 500)
    a = _adjacency(indptr, cols, len(x))
    assert np.array_equal(a, d < 0.2)
    assert a[1002, 1001] and a[1001, 1002] and a[1002, 1002]
    sel = ProbCover(delta=0.2, chunk=500).select(ctx, len(x) - 1)
    assert sel.stats["coverage"] == 1.0  # the isolated pair is covered by one pick from it


def test_reported_coverage_equals_a_dense_reference():
    x = _digits()
    earlier = np.random.default_rng(1).choice(len(x), 20, replace=False)
    for selected in (np.zeros(0, dtype=np.int64), earlier):
        ctx = _ctx(x, 0, selected)
        d = _dense(ctx)
        sel = ProbCover(delta=0.35).select(ctx, 40)
        picks, gains = np.asarray(sel.indices), np.asarray(sel.scores)
        covered = (d[selected] < 0.35).any(0) if len(selected) else np.zeros(len(x), dtype=bool)
        assert sel.stats["coverage_before"] * len(x) == pytest.approx(covered.sum())
        for p, g in zip(picks, gains, strict=True):  # each score is the pick's marginal gain
            new = (d[p] < 0.35) & ~covered
            assert g == new.sum()
            covered |= new
        assert sel.stats["coverage"] * len(x) == pytest.approx(covered.sum())
        assert sel.stats["edges"] == (d < 0.35).sum()
        assert np.all(np.diff(gains) <= 0), "greedy gains never grow (coverage is submodular)"
        assert np.all(gains >= 0) and np.all(np.diff(np.cumsum(gains)) >= 0), "coverage never drops"
        best = ((d < 0.35) & ~((d[selected] < 0.35).any(0) if len(selected) else False)).sum(1)
        best[selected] = -1
        assert gains[0] == best.max(), "the first pick covers the most"


def test_the_picks_are_a_dense_greedys_with_the_seeded_tie_order():
    """A plain dense greedy (argmax of gain, ties by the rank drawn first from ctx.rng()) picks the
    same points in the same order, with earlier picks covering first."""
    x = _digits()
    earlier = np.arange(0, len(x), 97)
    ctx = _ctx(x, 6, earlier)
    adj = _dense(ctx) < 0.3
    rank = ctx.rng().permutation(len(x))  # a given delta: the tie order is the generator's first draw
    covered = adj[earlier].any(0)
    banned = np.zeros(len(x), dtype=bool)
    banned[earlier] = True
    want = []
    for _ in range(60):
        gain = (adj & ~covered).sum(1)
        key = np.where(banned, -1, gain * len(x) + rank)
        u = int(np.argmax(key))
        want.append(u)
        banned[u] = True
        covered |= adj[u]
    sel = ProbCover(delta=0.3).select(ctx, 60)
    assert np.asarray(sel.indices).tolist() == want


def test_greedy_reaches_one_minus_one_over_e_of_the_optimum():
    rng = np.random.default_rng(4)
    for trial in range(5):
        x = rng.normal(size=(12, 3)).astype(np.float32)
        ctx = _ctx(x, trial)
        d = _dense(ctx)
        cover = d < 0.9
        opt = max(cover[list(s)].any(0).sum() for s in itertools.combinations(range(12), 3))
        sel = ProbCover(delta=0.9).select(ctx, 3)
        got = cover[np.asarray(sel.indices)].any(0).sum()
        assert got == sel.stats["coverage"] * 12
        assert got >= (1 - 1 / math.e) * opt, (got, opt)


def test_auto_delta_keeps_the_balls_pure_under_the_pseudo_labels():
    """On the digits (every row measured): purity >= 0.95 under the k-means pseudo-labels (k = 10)
    the selector drew, recomputed densely; one grid step more would break it."""
    import torch

    x = _digits()
    ctx = _ctx(x, 0)
    sel = ProbCover().select(ctx, 30)
    delta = sel.stats["delta"]
    labels = pseudo_labels(ctx.features_tensor(), 10, ctx.rng(), 50, 512).numpy()  # the same draws
    d = _dense(ctx)

    def purity(r):
        other = labels[None, :] != labels[:, None]
        return float(np.mean(~((d < r) & other).any(1)))

    assert sel.stats["delta_bound"] == "purity" and sel.stats["purity_rows"] == len(x)
    assert purity(delta) >= 0.95 and purity(delta) == pytest.approx(sel.stats["purity"])
    assert purity(delta + 0.05) < 0.95
    assert round(delta / 0.05, 6) == round(delta / 0.05)  # on the paper's grid
    assert 0.05 <= delta < 2.0
    _ = torch  # noqa


def test_a_covered_pool_is_filled_at_random_and_recorded():
    x = _digits()[:100]
    sel = ProbCover(delta=1.5).select(_ctx(x, 0), 30)
    assert sel.stats["coverage"] == 1.0 and sel.stats["random_fill"] > 0
    gains = np.asarray(sel.scores)
    assert (
        np.all(gains[-sel.stats["random_fill"] :] == 0) and len(set(np.asarray(sel.indices).tolist())) == 30
    )
    other = ProbCover(delta=1.5).select(_ctx(x, 1), 30)
    assert set(np.asarray(other.indices).tolist()) != set(np.asarray(sel.indices).tolist())


def test_too_many_edges_is_a_user_error_naming_a_smaller_delta():
    with pytest.raises(UserError, match="smaller delta"):
        ProbCover(delta=1.9, max_edges=1000).select(_ctx(_digits()), 5)
    sel = ProbCover(max_edges=5_000).select(_ctx(_digits()), 5)  # auto: a delta under the cap
    assert sel.stats["edges"] <= 5_000 and sel.stats["delta_bound"] == "max_edges"


def test_same_seed_same_picks():
    x = _digits()
    a, b = (np.asarray(ProbCover().select(_ctx(x, 3), 15).indices) for _ in range(2))
    assert np.array_equal(a, b)


@pytest.mark.parametrize(
    "bad",
    [{"delta": 0}, {"delta": "wide"}, {"purity": 1.5}, {"delta_step": 0}, {"max_edges": 0}, {"chunk": -1}],
)
def test_bad_options_name_the_option(bad):
    with pytest.raises(UserError, match="probcover " + next(iter(bad))):
        ProbCover(**bad)


def test_delta_given_as_text_is_a_number():
    assert ProbCover(delta="0.4").delta == 0.4 and ProbCover(delta="auto").delta is None


def test_probcover_passes_the_kit():
    check_selector(ProbCover, name="probcover")


@pytest.mark.slow
def test_a_run_with_probcover(cli, tmp_path):
    from conftest import TINY, summary_of

    r = cli(
        "run",
        "--plugin",
        "vecaf_bench_plugins.selectors.probcover",
        "--selector",
        "probcover",
        *TINY,
        "--out",
        tmp_path,
    )
    assert r.exit_code == 0, r.output
    summary = summary_of(tmp_path)
    stats = summary["rounds"][0]["stats"]
    assert stats["delta_rule"] == "auto" and stats["purity"] >= 0.95 and 0 < stats["coverage"] <= 1
    assert stats["edges"] >= summary["pool_size"]  # every point covers itself


@pytest.mark.skipif("not __import__('torch').cuda.is_available()")
def test_the_same_picks_on_the_gpu():
    """The graph is exact (float64 in the rounding band) and the tie order comes from the seed."""
    x = _digits()
    cpu = ProbCover(delta=0.3).select(_ctx(x, 2), 50)
    ctx = build_context(
        selector="probcover",
        capabilities=Capabilities(),
        features=x,
        seed=2,
        selected=np.zeros(0, dtype=np.int64),
        num_classes=10,
        device="cuda",
    )
    gpu = ProbCover(delta=0.3).select(ctx, 50)
    assert np.array_equal(np.asarray(cpu.indices), np.asarray(gpu.indices))
    assert cpu.stats["edges"] == gpu.stats["edges"]

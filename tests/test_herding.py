"""maxherding and uherding: the lazy greedy against a dense recomputation on real data (digits), its
objective, earlier picks, the uncertainty weighting, the options, the kits and (slow) the CLI."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TINY, summary_of
from sklearn.datasets import load_digits

from vecaf_bench.api import Capabilities, UserError
from vecaf_bench.run.selection_round import build_context
from vecaf_bench.testing import check_selector
from vecaf_bench_plugins.selectors import maxherding as mh
from vecaf_bench_plugins.selectors.maxherding import MaxHerding
from vecaf_bench_plugins.selectors.uherding import UHerding, uncertainty_of

DIGITS = load_digits()


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _ctx(feats=None, seed=0, selected=(), trained_steps=0, caps=None, name="maxherding"):
    feats = DIGITS.data.astype(np.float32) if feats is None else feats
    return build_context(
        selector=name,
        capabilities=caps or Capabilities(),
        features=feats,
        seed=seed,
        selected=np.asarray(selected, dtype=np.int64),
        trained_steps=trained_steps,
        num_classes=10,
    )


def _kernel(x: np.ndarray, sigma: float = mh.PAPER_SIGMA) -> np.ndarray:
    f = _unit(x.astype(np.float64))
    d2 = np.maximum((f * f).sum(1)[:, None] + (f * f).sum(1)[None, :] - 2 * f @ f.T, 0)
    return np.exp(-d2 / (2 * sigma**2))


def _coverage(k: np.ndarray, picks) -> float:
    """sum_i max_{s in S} k(f_i, f_s), dense."""
    return float(k[:, np.asarray(picks)].max(1).sum()) if len(picks) else 0.0


def _dense_greedy(k: np.ndarray, count: int, w: np.ndarray | None = None, start=()) -> list[int]:
    w = np.ones(len(k)) if w is None else w
    m = k[:, list(start)].max(1) if len(start) else np.zeros(len(k))
    picks: list[int] = []
    for _ in range(count):
        g = (w[:, None] * np.maximum(k - m[:, None], 0)).sum(0)
        g[list(start) + picks] = -np.inf
        picks.append(int(np.argmax(g)))
        m = np.maximum(m, k[:, picks[-1]])
    return picks


def test_lazy_greedy_equals_the_dense_greedy_and_its_objective_on_digits():
    """1,797 digits, 25 picks: the picks of the plain (dense, float64) greedy, and the objective
    recomputed densely from the picks; it never decreases and beats random sets of the same size."""
    k = _kernel(DIGITS.data)
    sel = MaxHerding(chunk=500)  # blocks smaller than the pool: the chunked paths run
    got = sel.select(_ctx(), 25)
    assert got.indices.tolist() == _dense_greedy(k, 25)
    history = np.asarray(sel.history)
    assert len(history) == 26 and history[0] == 0
    assert np.all(np.diff(history) >= -1e-6), "the coverage never decreases"
    assert history[-1] == pytest.approx(_coverage(k, got.indices), rel=1e-5)
    assert got.stats["coverage_after"] == pytest.approx(history[-1] / len(k))
    rng = np.random.default_rng(0)
    randoms = [_coverage(k, rng.choice(len(k), 25, replace=False)) for _ in range(20)]
    assert history[-1] > max(randoms)
    assert np.all(np.diff(got.scores) <= 1e-9), "gains at pick time fall (submodularity)"
    assert len(set(DIGITS.target[got.indices].tolist())) == 10


def test_earlier_picks_count_as_covered():
    """Selecting 10 after 10 earlier picks continues the greedy exactly, and never repeats one."""
    first = MaxHerding().select(_ctx(), 20).indices
    more = MaxHerding().select(_ctx(selected=first[:10], seed=1), 10)
    assert more.indices.tolist() == first[10:].tolist()
    k = _kernel(DIGITS.data)
    assert more.stats["coverage_before"] == pytest.approx(_coverage(k, first[:10]) / len(k), rel=1e-5)


def test_deterministic_and_subsets_read_the_seed():
    a, b = (MaxHerding().select(_ctx(seed=s), 12).indices for s in (3, 4))
    assert np.array_equal(a, b), "the whole pool as candidates: no randomness"
    assert MaxHerding().capabilities.randomized is False
    sub = MaxHerding(candidates=300, reference=900)
    assert sub.capabilities.randomized is True
    x, y = (MaxHerding(candidates=300, reference=900).select(_ctx(seed=s), 12) for s in (3, 3))
    assert np.array_equal(x.indices, y.indices)
    z = MaxHerding(candidates=300, reference=900).select(_ctx(seed=4), 12)
    assert not np.array_equal(np.sort(x.indices), np.sort(z.indices))
    assert x.stats["candidates"] == 300 and x.stats["reference"] == 900
    assert len(set(x.indices.tolist())) == 12


def test_auto_subsets_bound_large_pools(monkeypatch):
    """The default ("auto") evaluates the whole of a small pool, and a seeded AUTO_ROWS subset of a
    larger one: the quadratic first pass stays bounded, and the stats say the picks were subsampled."""
    whole = MaxHerding().select(_ctx(), 8)
    assert whole.stats["subsampled"] == 0 and whole.stats["reference"] == len(DIGITS.data)
    assert whole.indices.tolist() == MaxHerding(candidates=None, reference=None).select(_ctx(), 8).indices.tolist()
    monkeypatch.setattr(mh, "AUTO_ROWS", 500)
    a, b, c = (MaxHerding().select(_ctx(seed=s), 8) for s in (3, 3, 4))
    assert a.stats["subsampled"] == 1 and a.stats["candidates"] == 500 and a.stats["reference"] == 500
    assert np.array_equal(a.indices, b.indices) and not np.array_equal(np.sort(a.indices), np.sort(c.indices))
    assert mh.parse_rows("maxherding", "candidates", "AUTO") == "auto"
    assert mh.parse_rows("maxherding", "candidates", "none") is None
    assert mh.parse_rows("maxherding", "candidates", "300") == 300


def test_sigma_options():
    x = DIGITS.data.astype(np.float32)
    assert mh.parse_sigma("maxherding", "0.5") == 0.5 and mh.parse_sigma("maxherding", "Median") == "median"
    median = MaxHerding(sigma="median").select(_ctx(), 5).stats["sigma"]
    f = _unit(x.astype(np.float64))
    d = np.sqrt(np.maximum(2 - 2 * f @ f.T, 0))[np.triu_indices(len(f), 1)]
    assert len(f) <= mh.MEDIAN_SAMPLE  # every pair counts: no sampling
    assert median == pytest.approx(np.median(d), rel=1e-3)
    assert MaxHerding(sigma="adaptive").select(_ctx(), 3).stats["sigma"] == pytest.approx(mh.PAPER_SIGMA)
    earlier = [0, 1, 2, 3]
    adaptive = MaxHerding(sigma="adaptive").select(_ctx(selected=earlier), 3).stats["sigma"]
    pair = np.sqrt(np.maximum(2 - 2 * f[earlier] @ f[earlier].T, 0))[np.triu_indices(4, 1)]
    assert adaptive == pytest.approx(pair[pair > 0].min() / np.sqrt(2), rel=1e-3)
    picks = MaxHerding(sigma=0.3).select(_ctx(), 10).indices
    assert picks.tolist() == _dense_greedy(_kernel(x, 0.3), 10)


BAD = [{"sigma": "wide"}, {"sigma": -1.0}, {"candidates": 0}, {"candidates": "many"}, {"reference": 0},
       {"reference": 2.5}, {"chunk": 0}]


@pytest.mark.parametrize("bad", BAD)
def test_bad_options_name_the_option(bad):
    with pytest.raises(UserError, match="maxherding " + next(iter(bad))):
        MaxHerding(**bad)


@pytest.mark.parametrize("bad", [{"uncertainty": "bald"}, {"temperature": 0.0}, {"sigma": "x"}])
def test_uherding_bad_options_name_the_option(bad):
    with pytest.raises(UserError, match="uherding " + next(iter(bad))):
        UHerding(**bad)


def test_maxherding_passes_the_kit():
    check_selector(MaxHerding, name="maxherding")
    check_selector(MaxHerding, options={"candidates": 20, "reference": 40}, name="maxherding")


# -- uherding -------------------------------------------------------------------------------------
class _Fixed(UHerding):
    """UHerding with given uncertainties (by pool index) instead of a model's."""

    def __init__(self, u: np.ndarray, **options):
        super().__init__(**options)
        self.u = u

    def uncertainties(self, ctx, rows):
        return self.u[rows]


def _uctx(**kw):
    return _ctx(caps=UHerding.capabilities, name="uherding", trained_steps=5, **kw)


def test_uniform_uncertainty_gives_maxherdings_picks():
    n = len(DIGITS.data)
    for selected in ((), (5, 50, 500)):
        expected = MaxHerding().select(_ctx(selected=selected), 15).indices
        got = _Fixed(np.full(n, 0.37), sigma="paper").select(_uctx(selected=selected), 15)
        assert got.indices.tolist() == expected.tolist()
        assert got.stats["uniform_weights"] == 0


def test_peaked_uncertainty_moves_picks_toward_uncertain_points():
    """Uncertainty 1 on the 3s and 0.02 elsewhere: far more 3s than maxherding takes, and the greedy
    is the dense weighted greedy."""
    threes = DIGITS.target == 3
    u = np.where(threes, 1.0, 0.02)
    got = _Fixed(u, sigma="paper").select(_uctx(), 20)
    plain = MaxHerding().select(_ctx(), 20).indices
    assert threes[got.indices].sum() >= threes[plain].sum() + 5
    assert got.indices.tolist() == _dense_greedy(_kernel(DIGITS.data), 20, w=u)
    assert got.stats["uncertainty_picked"] > got.stats["uncertainty_pool"]


def test_untrained_head_or_flat_uncertainty_means_uniform_weights():
    n = len(DIGITS.data)
    plain = MaxHerding().select(_ctx(), 8).indices
    cold_ctx = _ctx(caps=UHerding.capabilities, name="uherding")  # trained_steps 0, and no model at all
    cold = UHerding(sigma="paper").select(cold_ctx, 8)
    assert cold.indices.tolist() == plain.tolist() and cold.stats["uniform_weights"] == 1
    flat = _Fixed(np.zeros(n), sigma="paper").select(_uctx(), 8)
    assert flat.indices.tolist() == plain.tolist() and flat.stats["uniform_weights"] == 1


def test_uncertainty_measures():
    logits = np.log(np.array([[0.7, 0.2, 0.1], [0.4, 0.4, 0.2]]))
    assert uncertainty_of(logits, "margin", 1.0) == pytest.approx([0.5, 1.0])
    assert uncertainty_of(logits, "confidence", 1.0) == pytest.approx([0.3, 0.6])
    h = -(np.array([0.7, 0.2, 0.1]) * np.log([0.7, 0.2, 0.1])).sum()
    assert uncertainty_of(logits, "entropy", 1.0)[0] == pytest.approx(h)
    hot = uncertainty_of(logits, "margin", 10.0)
    assert np.all(hot > uncertainty_of(logits, "margin", 1.0) - 1e-12), "a higher T flattens the softmax"
    assert uncertainty_of(np.zeros((2, 1)), "margin", 1.0) == pytest.approx([0.0, 0.0]), "one class"


def test_uherding_passes_the_kit():
    assert UHerding.capabilities.uses == {"model"} and UHerding.capabilities.cold_start == "maxherding"
    check_selector(UHerding, name="uherding")


# -- end to end -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_maxherding_runs_through_the_cli(cli, tmp_path):
    r = cli("run", "--plugin", "vecaf_bench_plugins.selectors.maxherding", "--selector", "maxherding",
            *TINY, "--out", tmp_path)  # fmt: skip
    assert r.exit_code == 0, r.output
    s = summary_of(tmp_path)
    assert s["selector"] == "maxherding" and s["label_budget"] == 30
    assert s["rounds"][0]["stats"]["coverage_after"] > 0


@pytest.mark.slow
def test_uherding_runs_in_rounds_through_the_cli(cli, tmp_path):
    r = cli("run", "--plugin", "vecaf_bench_plugins.selectors.uherding",
            "--plugin", "vecaf_bench_plugins.selectors.maxherding", "--selector", "uherding", "--rounds", "2",
            *TINY, "--out", tmp_path)  # fmt: skip
    assert r.exit_code == 0, r.output
    s = summary_of(tmp_path)
    assert s["selector"] == "uherding" and s["uses"] == ["model"]
    assert [x["selector"] for x in s["rounds"]] == ["maxherding", "uherding"]
    assert sum(x["picked"] for x in s["rounds"]) == 30
    assert s["rounds"][1]["stats"]["uniform_weights"] == 0

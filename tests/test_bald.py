"""bald: the mutual information against a hand computation on fixed MC-dropout probabilities,
what it asks the engine for, the kit, and seeded determinism on the kit's real model."""

from __future__ import annotations

import numpy as np
import pytest
from fixed_outputs import context

from vecaf_bench.api import UserError
from vecaf_bench.testing import check_selector, make_context, make_pool
from vecaf_bench_plugins.selectors.bald import Bald, mutual_information


def hand_mi(mc: np.ndarray) -> np.ndarray:
    """H[mean_t p_t] - mean_t H[p_t], one sample at a time."""
    h = lambda p: -sum(q * np.log(q) for q in p if q > 0)  # noqa: E731
    return np.array([h(mc[:, i].mean(0)) - np.mean([h(mc[t, i]) for t in range(len(mc))])
                     for i in range(mc.shape[1])])  # fmt: skip


def test_mutual_information_equals_the_hand_one():
    mc = np.random.default_rng(0).dirichlet(np.ones(4) * 0.5, size=(7, 30))  # T = 7, 30 samples, 4 classes
    np.testing.assert_allclose(mutual_information(mc), hand_mi(mc), rtol=1e-10, atol=1e-12)
    assert np.all(mutual_information(mc) >= 0)


def test_picks_disagreement_not_mere_uncertainty():
    """Per sample, T = 4 draws over 2 classes: confident and agreeing (MI 0), uniform in every draw
    (maximal entropy of the mean, but MI 0: no disagreement), confident but disagreeing (MI log 2)."""
    agree = [[0.99, 0.01]] * 4
    uniform = [[0.5, 0.5]] * 4
    disagree = [[0.99, 0.01], [0.01, 0.99]] * 2
    half = [[0.99, 0.01], [0.99, 0.01], [0.99, 0.01], [0.01, 0.99]]
    mc = np.array([agree, uniform, disagree, half, disagree, uniform]).transpose(1, 0, 2)  # (T, N, C)
    ctx, provider = context(Bald, mc_probs=mc, selected=[4], name="bald")
    got = Bald(mc_samples=4, dropout=0.25).select(ctx, 3)
    assert np.asarray(got.indices).tolist() == [2, 3, 0]  # uniform ties with agree at 0: the lower index
    np.testing.assert_allclose(got.scores, hand_mi(mc.astype(np.float32))[[2, 3, 0]], rtol=1e-5, atol=1e-6)
    assert got.scores[0] == pytest.approx(np.log(2) - 0.056, abs=0.001)  # log 2 - H(0.99, 0.01)
    assert got.stats["uncertainty_pool"] == pytest.approx(hand_mi(mc)[[0, 1, 2, 3, 5]].mean(), rel=1e-4)
    # one request: the unselected pool, MC probabilities only, T and p as configured
    assert provider.asked == [([0, 1, 2, 3, 5], frozenset({"mc_probs"}), 4, 0.25)]
    assert ctx.forward_batches > 0


def test_top_count_on_random_draws():
    mc = np.random.default_rng(1).dirichlet(np.ones(5), size=(20, 80))
    ctx, _ = context(Bald, mc_probs=mc, selected=[0, 7], name="bald")
    got = Bald().select(ctx, 10)  # defaults: T = 20 (asserted by the provider), p = 0.5
    free = np.setdiff1d(np.arange(80), [0, 7])
    mi = hand_mi(mc.astype(np.float32))
    assert np.asarray(got.indices).tolist() == free[np.argsort(-mi[free], kind="stable")[:10]].tolist()


def test_conforms_and_is_seeded_on_the_kits_model():
    check_selector(Bald, name="bald")
    check_selector(Bald, options={"mc_samples": 3, "dropout": 0.2, "candidates": 20}, name="bald")
    caps = Bald.capabilities
    assert caps.uses == {"model"} and caps.cold_start == "random" and caps.randomized
    feats, labels = make_pool(n=60, seed=2)
    runs = []
    for seed in (0, 0, 1):
        s = Bald(mc_samples=8)
        ctx = make_context(s, feats, labels, selected=[1, 2], seed=seed, round=1, rounds=2, name="bald")
        runs.append(np.asarray(s.select(ctx, 8).indices).tolist())
    assert runs[0] == runs[1] and runs[0] != runs[2]  # same seed, same masks (and, in the kit, model)


@pytest.mark.parametrize("bad", [{"mc_samples": 1}, {"dropout": 0.0}, {"dropout": 1.0}, {"candidates": 0}])
def test_bad_options_name_the_option(bad):
    with pytest.raises(UserError, match="bald " + next(iter(bad))):
        Bald(**bad)

"""entropy, margin, least-confidence: the picks against a hand softmax computation on fixed logits
(ties included), on the kit's real tiny model, the kit itself; and (slow) every built-in model-based
selector end to end through the CLI in rounds: round 0 by the cold start, round 1 by the selector."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TINY, summary_of
from fixed_outputs import context

from vecaf_bench.api import Selection, UndeclaredUse, UserError
from vecaf_bench.testing import check_selector, make_context, make_pool
from vecaf_bench_plugins.selectors.entropy import Entropy
from vecaf_bench_plugins.selectors.least_confidence import LeastConfidence
from vecaf_bench_plugins.selectors.margin import Margin


def hand_softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def hand_entropy(p: np.ndarray) -> np.ndarray:
    return np.array([-sum(q * np.log(q) for q in row if q > 0) for row in p])


def hand_margin(p: np.ndarray) -> np.ndarray:  # the uncertainty 1 - (p1 - p2)
    top = np.sort(p, axis=1)[:, ::-1]
    return 1.0 - (top[:, 0] - (top[:, 1] if p.shape[1] > 1 else 0.0))


def hand_least_confidence(p: np.ndarray) -> np.ndarray:
    return 1.0 - p.max(axis=1)


SELECTORS = {
    "entropy": (Entropy, hand_entropy),
    "margin": (Margin, hand_margin),
    "least-confidence": (LeastConfidence, hand_least_confidence),
}
ALL = sorted(SELECTORS)


def fixed_logits(n: int = 60, c: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, c)) * 2.0


@pytest.mark.parametrize("name", ALL)
def test_picks_the_most_uncertain_unselected_samples(name):
    factory, hand = SELECTORS[name]
    logits, earlier = fixed_logits(), [3, 10, 11, 40]
    ctx, provider = context(factory, logits=logits, selected=earlier, name=name)
    got = factory().select(ctx, 9)
    assert isinstance(got, Selection)

    u = hand(hand_softmax(logits))
    free = np.setdiff1d(np.arange(len(logits)), earlier)
    want = free[np.argsort(-u[free], kind="stable")[:9]]
    assert np.asarray(got.indices).tolist() == want.tolist()
    np.testing.assert_allclose(got.scores, u[want], rtol=1e-5, atol=1e-6)
    assert np.all(np.diff(got.scores) <= 0), "scores: higher = picked earlier"
    assert got.stats["uncertainty_picked"] == pytest.approx(u[want].mean(), rel=1e-5)
    assert got.stats["uncertainty_pool"] == pytest.approx(u[free].mean(), rel=1e-5)
    assert got.stats["uncertainty_picked"] > got.stats["uncertainty_pool"]
    assert got.stats["scored"] == len(free)
    # one forward over the unselected samples only, for logits only (probs are derived), counted
    assert provider.asked == [(free.tolist(), frozenset({"logits"}), 0, 0.5)]
    assert ctx.forward_batches > 0


# C: confident. M: two equal top classes (margin 0, lower entropy). U: uniform (maximal entropy and
# 1 - max p; margin 0 too). Row 2 is an earlier pick.
C, M, U = [5, 0, 0], [1, 1, 0], [0, 0, 0]
TIES = np.array([C, M, U, C, M, U, U, [0, 5, 0]], dtype=np.float64)


@pytest.mark.parametrize(
    "name, want",
    [("entropy", [5, 6, 1, 4]), ("least-confidence", [5, 6, 1, 4]), ("margin", [1, 4, 5, 6])],
)
def test_ties_go_to_the_lower_index(name, want):
    factory, hand = SELECTORS[name]
    ctx, _ = context(factory, logits=TIES, selected=[2], name=name)
    got = factory().select(ctx, 4)
    assert np.asarray(got.indices).tolist() == want
    if name == "margin":  # U and M both have p1 = p2: tied at the maximal uncertainty 1
        np.testing.assert_allclose(got.scores, 1.0)
    np.testing.assert_allclose(got.scores, hand(hand_softmax(TIES))[want], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ALL)
def test_on_the_kits_real_model_the_ranking_is_the_hand_one(name):
    """The kit's tiny convolutional model, trained a few steps: the engine's forward path."""
    factory, hand = SELECTORS[name]
    feats, labels = make_pool(n=40, seed=4)
    selector = factory()
    ctx = make_context(selector, feats, labels, selected=[0, 1, 2], seed=2, round=1, rounds=2, name=name)
    got = selector.select(ctx, 6)
    free = ctx.unselected()
    u = hand(hand_softmax(np.asarray(ctx.pool_outputs(free, what=("logits",)).logits, dtype=np.float64)))
    np.testing.assert_allclose(got.scores, np.sort(u)[::-1][:6], rtol=1e-4, atol=1e-6)
    assert set(np.asarray(got.indices).tolist()) <= set(free.tolist())


@pytest.mark.parametrize("name", ALL)
def test_candidates_score_a_seeded_subset(name):
    factory, hand = SELECTORS[name]
    logits = fixed_logits(n=200)
    u = hand(hand_softmax(logits))
    picks = []
    for seed in (0, 0, 1):
        ctx, provider = context(factory, logits=logits, selected=[0, 1, 2], seed=seed, name=name)
        got = factory(candidates=50).select(ctx, 5)
        ((idx, _, _, _),) = provider.asked
        assert len(idx) == 50 == len(set(idx)) and not set(idx) & {0, 1, 2}
        want = np.asarray(idx)[np.argsort(-u[idx], kind="stable")[:5]]
        assert np.asarray(got.indices).tolist() == want.tolist()
        picks.append(np.asarray(got.indices).tolist())
    assert picks[0] == picks[1] and picks[0] != picks[2]
    assert factory(candidates=50).capabilities.randomized and not factory().capabilities.randomized
    assert len(factory(candidates=3).select(context(factory, logits=logits, name=name)[0], 8).indices) == 8


@pytest.mark.parametrize("name", ALL)
def test_conforms_declares_and_validates(name):
    factory, _ = SELECTORS[name]
    check_selector(factory, name=name)
    check_selector(factory, options={"candidates": 20}, name=name)
    assert factory.capabilities.uses == {"model"} and factory.capabilities.cold_start == "random"
    with pytest.raises(UserError, match=f"{name} candidates must be a positive"):
        factory(candidates=0)
    with pytest.raises(UndeclaredUse):
        factory().select(context(factory, logits=fixed_logits(), uses=(), name=name)[0], 3)
    ctx, _ = context(factory, logits=fixed_logits(n=12), round=0, name=name)
    assert len(factory().select(ctx, 0).indices) == 0
    assert sorted(np.asarray(factory().select(ctx, 12).indices).tolist()) == list(range(12))


def test_one_class_every_score_ties():
    logits = np.zeros((6, 1))  # one class: p = 1 everywhere
    for factory, _ in SELECTORS.values():
        got = factory().select(context(factory, logits=logits, selected=[1])[0], 3)
        assert np.asarray(got.indices).tolist() == [0, 2, 3]
        np.testing.assert_allclose(got.scores, 0.0, atol=1e-7)


# -- every built-in model-based selector end to end, in rounds ---------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(
    "name, module",
    [("entropy", "entropy"), ("margin", "margin"), ("least-confidence", "least_confidence"),
     ("badge", "badge"), ("bald", "bald"), ("coreset-model", "coreset_model")],
)  # fmt: skip
def test_runs_in_rounds_through_the_cli(cli, tmp_path, name, module):
    r = cli("run", "--plugin", f"vecaf_bench_plugins.selectors.{module}", "--selector", name, "--rounds", "2",
            *TINY, "--out", tmp_path)  # fmt: skip
    assert r.exit_code == 0, r.output
    s = summary_of(tmp_path)
    assert s["selector"] == name and s["uses"] == ["model"]
    assert [x["selector"] for x in s["rounds"]] == ["random", name]  # round 0: the cold start
    assert sum(x["picked"] for x in s["rounds"]) == s["label_budget"] == 30
    assert s["rounds"][1]["selection_forward_batches"] > 0  # pool_outputs, counted

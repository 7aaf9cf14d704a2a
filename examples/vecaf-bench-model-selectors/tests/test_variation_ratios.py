"""variation-ratios against the conformance kit and against a hand count of the votes.

The reference tests build a context whose model outputs come from fixed arrays (an outputs
provider handed to `vecaf_bench.testing.build_context`, the function the engine builds its
contexts with), so the picks can be recomputed here in plain numpy.
"""

from __future__ import annotations

import numpy as np
import pytest
from vecaf_bench.api import Capabilities, Selection, UndeclaredUse, UserError
from vecaf_bench.testing import build_context, check_selector

from vecaf_bench_model_selectors.variation_ratios import VariationRatios


def test_conforms_to_the_selector_contract():
    check_selector(VariationRatios, name="variation-ratios")
    check_selector(VariationRatios, options={"mc_samples": 3, "dropout": 0.2}, name="variation-ratios")


def context(mc_probs: np.ndarray, selected=(), uses=("model",)):
    """A round-1 context whose `pool_outputs(mc_dropout=T)` serves the fixed (T, N, C) MC_PROBS."""
    asked = []

    def provider(idx, what, mc, p):  # (indices, outputs, MC draws, dropout) -> (outputs, forward batches)
        asked.append((idx.tolist(), mc, p))
        return {"mc_probs": mc_probs[:, idx].astype(np.float32)}, 1

    n = mc_probs.shape[1]
    ctx = build_context(
        selector="variation-ratios",
        capabilities=Capabilities(uses=uses, cold_start="random"),
        features=np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32),
        selected=np.asarray(selected, dtype=np.int64),
        round=1,
        rounds=2,
        num_classes=mc_probs.shape[2],
        trained_steps=5,
        outputs=provider,
    )
    return ctx, asked


def one_hot_draws(votes: list[list[int]], classes: int) -> np.ndarray:
    """(T, N, C) probabilities whose argmax in draw t for sample i is votes[i][t]."""
    v = np.asarray(votes).T  # (T, N)
    return np.where(np.arange(classes) == v[..., None], 0.7, 0.3 / (classes - 1))


def test_picks_the_largest_variation_ratio_ties_to_the_lower_index():
    votes = [
        [0, 0, 0, 0],  # v = 0
        [0, 1, 2, 0],  # mode 2 of 4: v = 0.5
        [1, 1, 1, 2],  # v = 0.25
        [0, 1, 2, 1],  # v = 0.5
        [2, 2, 2, 2],  # v = 0
        [0, 1, 0, 1],  # v = 0.5 (a tie between two modes: the mode count is 2 all the same)
    ]
    ctx, asked = context(one_hot_draws(votes, 3), selected=[3])
    got = VariationRatios(mc_samples=4, dropout=0.3).select(ctx, 3)
    assert isinstance(got, Selection)
    assert np.asarray(got.indices).tolist() == [1, 5, 2]  # 0.5, 0.5 (3 is an earlier pick), then 0.25
    np.testing.assert_allclose(got.scores, [0.5, 0.5, 0.25])
    assert got.stats["variation_ratio_pool"] == pytest.approx((0 + 0.5 + 0.25 + 0 + 0.5) / 5)
    assert asked == [([0, 1, 2, 4, 5], 4, 0.3)]  # the unselected pool, T = 4 draws at p = 0.3
    assert ctx.forward_batches == 1  # counted into the run's selection compute


def test_matches_a_hand_count_on_random_draws():
    rng = np.random.default_rng(1)
    mc = rng.dirichlet(np.ones(5), size=(20, 50))  # T = 20 draws, 50 samples, 5 classes
    ctx, _ = context(mc)
    got = VariationRatios().select(ctx, 10)
    hand = np.array([1 - np.bincount(mc[:, i].argmax(1), minlength=5).max() / 20 for i in range(50)])
    assert np.asarray(got.indices).tolist() == np.argsort(-hand, kind="stable")[:10].tolist()


def test_declares_model_and_validates_its_options():
    caps = VariationRatios.capabilities
    assert caps.uses == {"model"} and caps.cold_start == "random" and caps.randomized
    with pytest.raises(UndeclaredUse):
        VariationRatios().select(context(one_hot_draws([[0, 1]], 2), uses=())[0], 1)
    for bad in ({"mc_samples": 1}, {"dropout": 1.0}, {"dropout": 0}):
        with pytest.raises(UserError, match="variation-ratios " + next(iter(bad))):
            VariationRatios(**bad)

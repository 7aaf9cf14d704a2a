"""The two selectors against the conformance kit and against independent references.

The references build a `SelectionContext` by hand whose model outputs come from fixed arrays,
so that the picks can be recomputed here in plain numpy: the entropy ranking from a hand
softmax, BADGE's distances from the explicit C*D gradient embeddings.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from vecaf_bench.api import Selection, SelectionContext, UndeclaredUse, UserError
from vecaf_bench.testing import check_selector

from vecaf_bench_model_selectors.badge import Badge, grad_sq_dist, residuals
from vecaf_bench_model_selectors.entropy import Entropy


# -- the conformance kit --------------------------------------------------------------------------
def test_entropy_conforms_to_the_selector_contract():
    check_selector(Entropy, name="entropy")


def test_entropy_with_candidates_conforms():
    check_selector(Entropy, options={"candidates": 20}, name="entropy")


def test_badge_conforms_to_the_selector_contract():
    check_selector(Badge, name="badge")


def test_badge_small_chunks_conform():
    check_selector(Badge, options={"chunk": 7}, name="badge")


# -- a hand-made context ----------------------------------------------------------------------
class Outputs:
    """An engine stand-in: fixed logits and embeddings, served for the asked indices."""

    def __init__(self, logits: np.ndarray, embeddings: np.ndarray) -> None:
        self.arrays = {"logits": logits.astype(np.float32), "embeddings": embeddings.astype(np.float32)}
        self.asked: list[tuple[np.ndarray, frozenset[str]]] = []

    def __call__(self, idx, what, mc, p):
        self.asked.append((np.array(idx), frozenset(what)))
        return {k: self.arrays[k][idx].copy() for k in what if k in self.arrays}, 1 + len(idx) // 16


def context(logits, embeddings, selected=(), seed=0, selector="entropy", uses=("model",), round=1):
    n = len(logits)
    provider = Outputs(logits, embeddings)
    feats = np.random.default_rng(99).normal(size=(n, 4)).astype(np.float32)
    feats.setflags(write=False)
    ctx = SelectionContext(
        features=feats,
        selected=np.asarray(selected, dtype=np.int64),
        seed=seed,
        round=round,
        rounds=3,
        num_classes=logits.shape[1],
        trained_steps=5 if round else 0,
        selector=selector,
        uses=frozenset(uses),
        _outputs=provider,
    )
    return ctx, provider


def random_outputs(n=60, c=5, d=7, seed=0, scale=2.0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, c)) * scale, rng.normal(size=(n, d))


def hand_entropy(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return -(p * np.log(p)).sum(axis=1)


# -- entropy ----------------------------------------------------------------------------------
def test_entropy_picks_the_highest_entropy_unselected_samples():
    logits, emb = random_outputs()
    earlier = [3, 10, 11, 40]
    ctx, provider = context(logits, emb, selected=earlier)
    got = Entropy().select(ctx, 9)
    assert isinstance(got, Selection)

    h = hand_entropy(logits)
    free = np.setdiff1d(np.arange(len(logits)), earlier)
    want = free[np.argsort(-h[free])[:9]]
    assert np.asarray(got.indices).tolist() == want.tolist()
    np.testing.assert_allclose(got.scores, h[want], rtol=1e-5)
    assert got.stats["entropy_picked"] == pytest.approx(h[want].mean(), rel=1e-5)
    assert got.stats["entropy_pool"] == pytest.approx(h[free].mean(), rel=1e-5)
    assert got.stats["entropy_picked"] > got.stats["entropy_pool"]
    assert got.stats["scored"] == len(free)
    # it asked only for the unselected samples, and only for logits (probs are derived)
    ((idx, what),) = provider.asked
    assert idx.tolist() == free.tolist() and what == {"logits"}
    assert ctx.forward_batches > 0


def test_entropy_ties_go_to_the_lower_index():
    logits = np.zeros((10, 3))  # every sample: uniform, maximal entropy
    logits[[1, 4], 0] = 5.0  # two confident ones
    ctx, _ = context(logits, np.ones((10, 2)), selected=[0, 2])
    got = Entropy().select(ctx, 4)
    assert np.asarray(got.indices).tolist() == [3, 5, 6, 7]


def test_entropy_candidates_score_a_seeded_subset():
    logits, emb = random_outputs(n=200)
    h = hand_entropy(logits)
    picks = []
    for seed in (0, 0, 1):
        ctx, provider = context(logits, emb, selected=[0, 1, 2], seed=seed)
        got = Entropy(candidates=50).select(ctx, 5)
        ((idx, _),) = provider.asked
        assert len(idx) == 50 and len(set(idx.tolist())) == 50 and not set(idx.tolist()) & {0, 1, 2}
        # the picks are the top of the scored subset
        assert np.asarray(got.indices).tolist() == idx[np.argsort(-h[idx], kind="stable")[:5]].tolist()
        picks.append(np.asarray(got.indices).tolist())
    assert picks[0] == picks[1] and picks[0] != picks[2]
    assert Entropy(candidates=50).capabilities.randomized and not Entropy().capabilities.randomized
    # fewer candidates than the count: it scores `count` of them
    ctx, provider = context(logits, emb)
    assert len(Entropy(candidates=3).select(ctx, 8).indices) == 8


def test_entropy_declares_model_and_cold_start():
    caps = Entropy.capabilities
    assert caps.uses == {"model"} and caps.cold_start == "random"
    with pytest.raises(UserError):
        Entropy(candidates=0)


def test_entropy_reads_nothing_undeclared():
    logits, emb = random_outputs()
    ctx, _ = context(logits, emb, uses=())
    with pytest.raises(UndeclaredUse):
        Entropy().select(ctx, 3)


# -- badge ------------------------------------------------------------------------------------
def explicit_gradient_embeddings(logits: np.ndarray, emb: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    a = p - np.eye(p.shape[1])[p.argmax(axis=1)]
    return np.einsum("nc,nd->ncd", a, emb.astype(np.float64)).reshape(len(p), -1)


def test_badge_distance_trick_equals_explicit_distances():
    logits, emb = random_outputs(n=25, c=4, d=6, seed=3)
    g = explicit_gradient_embeddings(logits, emb)
    full = ((g[:, None, :] - g[None, :, :]) ** 2).sum(-1)
    p = torch.softmax(torch.as_tensor(logits, dtype=torch.float32), dim=1)
    a = residuals(p)
    e = torch.as_tensor(emb, dtype=torch.float32)
    sq = (a * a).sum(1) * (e * e).sum(1)
    np.testing.assert_allclose(sq.numpy(), (g * g).sum(1), rtol=1e-4, atol=1e-5)
    for c in range(len(g)):
        for chunk in (4, 1000):
            d2 = grad_sq_dist(a, e, sq, c, chunk).numpy()
            np.testing.assert_allclose(d2, full[:, c], rtol=1e-4, atol=1e-4)


def reference_badge(logits, emb, selected, count, uniforms):
    """k-means++ on the explicit gradient embeddings, with the same uniforms, in float64."""
    free = np.setdiff1d(np.arange(len(logits)), selected)
    g = explicit_gradient_embeddings(logits, emb)[free]
    picks = [int(np.argmax((g * g).sum(1)))]
    d2 = ((g - g[picks[0]]) ** 2).sum(1)
    for k in range(1, count):
        d2[picks] = 0.0
        cum = np.cumsum(d2)
        j = int(np.searchsorted(cum, uniforms[k] * cum[-1], side="right"))
        picks.append(j)
        d2 = np.minimum(d2, ((g - g[j]) ** 2).sum(1))
    return free[picks]


def test_badge_first_pick_is_the_largest_gradient_and_the_rest_is_kmeanspp():
    logits, emb = random_outputs(n=80, c=6, d=5, seed=4, scale=1.0)
    earlier = [0, 5, 17, 33]
    g = explicit_gradient_embeddings(logits, emb)
    norms = np.linalg.norm(g, axis=1)
    norms[earlier] = -1
    reports = []
    ctx, provider = context(logits, emb, selected=earlier, selector="badge")
    ctx = dataclasses.replace(ctx, _report=lambda done, total: reports.append((done, total)))
    got = Badge(chunk=16).select(ctx, 12)
    idx = np.asarray(got.indices)
    assert idx[0] == int(np.argmax(norms))  # the first centre: the largest gradient norm, unselected
    assert len(set(idx.tolist())) == 12 and not set(idx.tolist()) & set(earlier)
    want = reference_badge(logits, emb, earlier, 12, ctx.rng().random(12))
    assert idx.tolist() == want.tolist()
    np.testing.assert_allclose(got.scores, np.linalg.norm(g[idx], axis=1), rtol=1e-4)
    assert got.stats["uniform_draws"] == 0 and got.stats["grad_norm_picked"] > 0
    assert reports and reports[-1] == (12, 12)
    ((asked, what),) = provider.asked
    assert asked.tolist() == np.setdiff1d(np.arange(80), earlier).tolist()
    assert what == {"logits", "embeddings"}


def test_badge_is_seeded():
    logits, emb = random_outputs(n=100, seed=5, scale=0.5)
    runs = [
        np.asarray(Badge().select(context(logits, emb, seed=s, selector="badge")[0], 10).indices).tolist()
        for s in (0, 0, 1)
    ]
    assert runs[0] == runs[1] and runs[0] != runs[2]
    assert runs[0][0] == runs[2][0]  # the first centre does not depend on the seed


def test_badge_all_zero_gradients_fall_back_to_uniform_draws():
    logits = np.zeros((30, 1))  # one class: p = onehot, every g_i = 0
    ctx, _ = context(logits, np.random.default_rng(0).normal(size=(30, 4)), selected=[2, 3], selector="badge")
    got = Badge().select(ctx, 28)  # the whole rest of the pool
    assert sorted(np.asarray(got.indices).tolist()) == [i for i in range(30) if i not in (2, 3)]
    assert got.stats["uniform_draws"] == 27


def test_badge_in_round_zero_and_count_zero():
    logits, emb = random_outputs(n=20)
    ctx, _ = context(logits, emb, round=0, selector="badge")
    assert len(set(np.asarray(Badge().select(ctx, 20).indices).tolist())) == 20
    assert len(Badge().select(ctx, 0).indices) == 0
    assert Badge.capabilities.uses == {"model"} and Badge.capabilities.cold_start == "random"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_badge_on_the_gpu_picks_as_on_the_cpu():
    logits, emb = random_outputs(n=3000, c=10, d=64, seed=6)
    ctx, _ = context(logits, emb, selected=np.arange(0, 3000, 7), selector="badge")
    cpu = np.asarray(Badge().select(ctx, 50).indices)
    gpu_ctx = dataclasses.replace(ctx, device=torch.device("cuda"))
    gpu = np.asarray(Badge().select(gpu_ctx, 50).indices)
    assert cpu[0] == gpu[0] and (cpu == gpu).mean() > 0.9  # float rounding may move a late draw

"""badge: the gradient-embedding distance trick against explicit C*D embeddings, the picks against a
numpy k-means++ on those embeddings, the empirical distribution of the second pick against
D^2 / sum D^2, the first pick, the kit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from fixed_outputs import context

from vecaf_bench.api import UserError
from vecaf_bench.testing import check_selector
from vecaf_bench_plugins.selectors.badge import Badge, grad_sq_dist, residuals


def random_outputs(n=60, c=5, d=7, seed=0, scale=2.0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, c)) * scale, rng.normal(size=(n, d))


def explicit_gradient_embeddings(logits: np.ndarray, emb: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    a = p - np.eye(p.shape[1])[p.argmax(axis=1)]
    return np.einsum("nc,nd->ncd", a, emb.astype(np.float64)).reshape(len(p), -1)


def badge_context(logits, emb, **kw):
    return context(Badge, logits=logits, embeddings=emb, name="badge", **kw)


def test_conforms_to_the_selector_contract():
    check_selector(Badge, name="badge")
    check_selector(Badge, options={"chunk": 7}, name="badge")
    assert Badge.capabilities.uses == {"model"} and Badge.capabilities.cold_start == "random"
    with pytest.raises(UserError, match="badge chunk"):
        Badge(chunk=0)


def test_distance_trick_equals_explicit_distances():
    logits, emb = random_outputs(n=25, c=4, d=6, seed=3)
    g = explicit_gradient_embeddings(logits, emb)
    full = ((g[:, None, :] - g[None, :, :]) ** 2).sum(-1)
    a = residuals(torch.softmax(torch.as_tensor(logits, dtype=torch.float32), dim=1))
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


def test_first_pick_is_the_largest_gradient_and_the_rest_is_kmeanspp():
    logits, emb = random_outputs(n=80, c=6, d=5, seed=4, scale=1.0)
    earlier = [0, 5, 17, 33]
    g = explicit_gradient_embeddings(logits, emb)
    norms = np.linalg.norm(g, axis=1)
    norms[earlier] = -1
    reports = []
    ctx, provider = badge_context(logits, emb, selected=earlier, report=lambda *at: reports.append(at))
    got = Badge(chunk=16).select(ctx, 12)
    idx = np.asarray(got.indices)
    assert idx[0] == int(np.argmax(norms))  # the first centre: the largest gradient norm, unselected
    assert len(set(idx.tolist())) == 12 and not set(idx.tolist()) & set(earlier)
    assert idx.tolist() == reference_badge(logits, emb, earlier, 12, ctx.rng().random(12)).tolist()
    np.testing.assert_allclose(got.scores, np.linalg.norm(g[idx], axis=1), rtol=1e-4)
    assert got.stats["uniform_draws"] == 0 and got.stats["grad_norm_picked"] > 0
    assert reports and reports[-1] == (12, 12)
    free = np.setdiff1d(np.arange(80), earlier).tolist()
    assert provider.asked == [(free, frozenset({"logits", "embeddings"}), 0, 0.5)]
    assert ctx.forward_batches > 0


def test_second_pick_is_drawn_with_probability_d2_over_the_sum():
    """k-means++'s D^2 sampling, empirically: over 4,000 seeds the frequency of each second pick is
    D^2(i) / sum D^2 (D: the gradient-embedding distance to the first pick) within 0.025 (4 std)."""
    logits, emb = random_outputs(n=7, c=3, d=4, seed=8, scale=1.0)
    g = explicit_gradient_embeddings(logits, emb)
    first = int(np.argmax((g * g).sum(1)))
    d2 = ((g - g[first]) ** 2).sum(1)
    want = d2 / d2.sum()
    seeds = 4000
    counts = np.zeros(len(g))
    ctx, _ = badge_context(logits, emb)
    selector = Badge()
    for seed in range(seeds):
        picks = np.asarray(selector.select(dataclasses.replace(ctx, seed=seed), 2).indices)
        assert picks[0] == first
        counts[picks[1]] += 1
    assert counts[first] == 0
    np.testing.assert_allclose(counts / seeds, want, atol=0.025)


def test_is_seeded():
    logits, emb = random_outputs(n=100, seed=5, scale=0.5)
    runs = [Badge().select(badge_context(logits, emb, seed=s)[0], 10).indices.tolist() for s in (0, 0, 1)]
    assert runs[0] == runs[1] and runs[0] != runs[2]
    assert runs[0][0] == runs[2][0]  # the first centre does not depend on the seed


def test_all_zero_gradients_fall_back_to_uniform_draws():
    logits = np.zeros((30, 1))  # one class: p = onehot, every g_i = 0
    ctx, _ = badge_context(logits, np.random.default_rng(0).normal(size=(30, 4)), selected=[2, 3])
    got = Badge().select(ctx, 28)  # the whole rest of the pool
    assert sorted(np.asarray(got.indices).tolist()) == [i for i in range(30) if i not in (2, 3)]
    assert got.stats["uniform_draws"] == 27


def test_round_zero_and_count_zero():
    logits, emb = random_outputs(n=20)
    ctx, _ = badge_context(logits, emb, round=0)
    assert len(set(np.asarray(Badge().select(ctx, 20).indices).tolist())) == 20
    assert len(Badge().select(ctx, 0).indices) == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_on_the_gpu_picks_as_on_the_cpu():
    logits, emb = random_outputs(n=3000, c=10, d=64, seed=6)
    ctx, _ = badge_context(logits, emb, selected=np.arange(0, 3000, 7))
    cpu = np.asarray(Badge().select(ctx, 50).indices)
    gpu = np.asarray(Badge().select(dataclasses.replace(ctx, device=torch.device("cuda")), 50).indices)
    assert cpu[0] == gpu[0] and (cpu == gpu).mean() > 0.9  # float rounding may move a late draw

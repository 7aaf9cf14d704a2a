"""ActiveFT: the spec's loss, its analytic gradient, its behaviour, and the exact fast mapping."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vecaf_bench.selection import SelectionContext
from vecaf_bench_plugins.selectors.activeft import (
    ActiveFT,
    loss_and_grad,
    map_centres_naive,
    map_centres_to_samples,
    reference_loss,
)


def clustered(n=600, d=16, k=12, seed=0, spread=0.15):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d))
    sizes = rng.multinomial(n - k, np.ones(k) / k) + 1
    labels = np.repeat(np.arange(k), sizes)
    x = centres[labels] + spread * rng.normal(size=(n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), labels


def direct_loss_float64(f, theta, tau, lam, w=None, mode="outside"):
    """The spec's formula, -log(e^{s/tau} / (e^{s/tau} + lambda*S)), in float64 numpy."""
    f, theta = f.astype(np.float64), theta.astype(np.float64)
    c = theta / np.linalg.norm(theta, axis=1, keepdims=True)
    sims = f @ c.T
    s, a = sims.max(1), sims.argmax(1)
    big_s = np.exp(c @ c.T / tau).sum(0)
    pos = np.exp(s / tau) * (w if (w is not None and mode == "inside") else 1.0)
    j = -np.log(pos / (pos + lam * big_s[a]))
    if w is not None and mode == "outside":
        return float((w * j).sum() / w.sum())
    return float(j.mean())


@pytest.mark.parametrize("mode", [None, "outside", "inside"])
def test_loss_equals_the_formula_and_gradient_equals_autograd(mode):
    f_np, _ = clustered(300, 8, 6)
    rng = np.random.default_rng(1)
    theta_np = rng.normal(size=(10, 8)).astype(np.float32)
    w_np = rng.uniform(0.2, 3.0, size=300).astype(np.float32) if mode else None
    f, theta = torch.from_numpy(f_np), torch.from_numpy(theta_np)
    w = torch.from_numpy(w_np) if mode else None
    loss, grad = loss_and_grad(f, theta, 0.07, 1.0, w, mode or "outside", chunk=64)
    expected = direct_loss_float64(f_np, theta_np, 0.07, 1.0, w_np, mode or "outside")
    assert loss == pytest.approx(expected, rel=1e-5)
    t = theta.double().clone().requires_grad_(True)
    ref = reference_loss(f.double(), t, 0.07, 1.0, w.double() if mode else None, mode or "outside")
    ref.backward()
    assert float(ref.detach()) == pytest.approx(expected, rel=1e-7)
    rel = (grad.double() - t.grad).norm() / t.grad.norm()
    assert rel < 1e-4


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_padding_the_centres_changes_nothing(dtype):
    """Centres padded to a tensor-core multiple (the CUDA default) give the same loss and
    gradient, in fp32 and in bf16, also when every similarity is negative (where zero padding
    would win the max)."""
    f_np, _ = clustered(400, 16, 6)
    theta_np = np.random.default_rng(2).normal(size=(13, 16)).astype(np.float32)
    cases = [(f_np, theta_np), (np.abs(f_np), -np.abs(theta_np))]  # the second: all similarities < 0
    for feats_np, th_np in cases:
        feats, theta = torch.from_numpy(feats_np), torch.from_numpy(th_np)
        plain = loss_and_grad(feats, theta, 0.07, 1.0, chunk=64, compute_dtype=dtype, pad_multiple=1)
        padded = loss_and_grad(feats, theta, 0.07, 1.0, chunk=64, compute_dtype=dtype, pad_multiple=8)
        assert padded[0] == pytest.approx(plain[0], rel=1e-6)
        assert torch.allclose(padded[1], plain[1], rtol=1e-5, atol=1e-7)


def test_loss_is_numerically_safe_at_small_tau():
    f_np, _ = clustered(200, 8, 4)
    theta = torch.from_numpy(f_np[:5].copy()) * 3
    loss, grad = loss_and_grad(torch.from_numpy(f_np), theta, 1e-3, 1.0)
    assert math.isfinite(loss) and torch.isfinite(grad).all()


def _ctx(feats, seed=0, selected=()):
    return SelectionContext(features=feats, selected=np.asarray(selected, dtype=np.int64), seed=seed)


def test_loss_decreases():
    feats, _ = clustered()
    sel = ActiveFT(iterations=60, lr=5e-3)
    sel.select(_ctx(feats), 12)
    h = sel.history
    assert h[-1] < h[0] and np.mean(h[-10:]) < np.mean(h[:10])


def test_covers_clusters_better_than_random():
    hits_a, hits_r, dist_a, dist_r = [], [], [], []
    for seed in range(4):
        feats, labels = clustered(seed=seed)
        picked = ActiveFT(iterations=100, lr=5e-3).select(_ctx(feats, seed), 12)
        rand = np.random.default_rng(seed).choice(len(feats), 12, replace=False)
        for idx, hits, dist in ((picked, hits_a, dist_a), (rand, hits_r, dist_r)):
            hits.append(len(set(labels[idx])))
            dist.append(float((1 - (feats @ feats[idx].T).max(1)).mean()))
    assert np.mean(hits_a) > np.mean(hits_r)
    assert np.mean(dist_a) < np.mean(dist_r)


def test_weights_outside_pull_centres_toward_high_loss_samples():
    """A high-weight (high-loss) sample pulls its centre harder under weight_mode=outside."""
    feats, labels = clustered(400, 8, 4, spread=0.4)
    f = torch.from_numpy(feats)
    theta = torch.from_numpy(feats[[0, 150, 250, 350]].copy())
    heavy = 5
    w = torch.ones(len(feats))
    w[heavy] = 50.0
    w = w / w.mean()
    _, g_uniform = loss_and_grad(f, theta, 0.07, 1.0)
    _, g_out = loss_and_grad(f, theta, 0.07, 1.0, w, "outside")
    _, g_in = loss_and_grad(f, theta, 0.07, 1.0, w, "inside")
    c = F.normalize(theta, dim=1)
    owner = int((f[heavy] @ c.T).argmax())

    def pull(g):  # gradient descent direction projected on the heavy sample
        return float((-g[owner]) @ f[heavy])

    assert pull(g_out) > pull(g_uniform)
    assert not torch.allclose(g_out, g_in)


@pytest.mark.parametrize("k,chunk", [(32, 10_000), (2, 97), (1, 50)])
def test_fast_mapping_equals_naive(k, chunk):
    feats, _ = clustered(500, 16, 5, spread=0.05)  # tight clusters: many centres share candidates
    f = torch.from_numpy(feats)
    centres = torch.from_numpy(feats[np.random.default_rng(0).choice(500, 80, replace=False)])
    centres = centres + 0.01 * torch.randn(centres.shape, generator=torch.Generator().manual_seed(0))
    exclude = np.arange(0, 500, 7)
    fast, fallbacks = map_centres_to_samples(f, centres, exclude, k=k, chunk=chunk)
    naive = map_centres_naive(f, centres, exclude)
    assert np.array_equal(fast, naive)
    assert len(set(fast.tolist())) == 80 and not set(fast.tolist()) & set(exclude.tolist())
    if k == 1:
        assert fallbacks > 0  # the exact fallback was exercised


def test_pool_batch_and_farthest_init_run_and_are_deterministic():
    feats, _ = clustered()
    a = ActiveFT(iterations=10, pool_batch=200, init="farthest").select(_ctx(feats, 3), 10)
    b = ActiveFT(iterations=10, pool_batch=200, init="farthest").select(_ctx(feats, 3), 10)
    assert np.array_equal(a, b)


def test_bf16_selection_has_the_quality_of_fp32():
    """Lower precision is only allowed with the same selection quality: cluster coverage and
    mean distance to the nearest pick match fp32's, and most picks are the same samples."""
    overlaps = []
    for seed in range(3):
        feats, labels = clustered(1500, 32, 30, seed=seed, spread=0.3)
        fp32 = ActiveFT(iterations=60, lr=5e-3).select(_ctx(feats, seed), 30)
        bf16 = ActiveFT(iterations=60, lr=5e-3, precision="bf16").select(_ctx(feats, seed), 30)
        rand = np.random.default_rng(seed).choice(len(feats), 30, replace=False)

        def dist(idx, feats=feats):
            return float((1 - (feats @ feats[idx].T).max(1)).mean())

        assert len(set(labels[bf16])) >= len(set(labels[fp32])) - 1
        assert dist(bf16) <= dist(fp32) * 1.02 < dist(rand)
        overlaps.append(len(set(fp32.tolist()) & set(bf16.tolist())) / 30)
    assert np.mean(overlaps) >= 0.6

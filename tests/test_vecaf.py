"""VeCAF: CEA feature augmentation, ODS weights, and the selector end to end on synthetic data."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vecaf_bench.selection import SelectionContext
from vecaf_bench_plugins.selectors.vecaf import VeCAF, cea_features, loss_weights, ridge_map


def _data(n=240, d=16, dt=8, k=4, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(k), n // k)
    centres = rng.normal(size=(k, d))
    f = centres[labels] + 0.5 * rng.normal(size=(n, d))
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    class_text = rng.normal(size=(k, dt))
    class_text /= np.linalg.norm(class_text, axis=1, keepdims=True)
    text = SimpleNamespace(per_sample=class_text[labels].astype(np.float32),
                           per_class=class_text.astype(np.float32), shared_space=False)
    return f.astype(np.float32), labels, text


def _ctx(f, labels, text, seed=0, losses=None, steps=0):
    ctx = SelectionContext(features=f, selected=np.zeros(0, dtype=np.int64), seed=seed, labels=labels,
                           num_classes=int(labels.max()) + 1, trained_steps=steps)
    ctx.text = text
    if losses is not None:
        ctx.per_sample_loss = lambda idx=None: losses if idx is None else losses[idx]
    return ctx


def test_eta_zero_returns_the_image_features():
    f, labels, text = _data()
    sel = VeCAF(eta=0.0)
    out = sel.features(_ctx(f, labels, text))
    assert torch.allclose(out, torch.nn.functional.normalize(torch.from_numpy(f), dim=1))


def test_cea_moves_features_toward_their_text_and_alpha_modes_differ():
    f, labels, text = _data()
    ft = torch.from_numpy(f)
    t = torch.from_numpy(text.per_sample)
    ct = torch.from_numpy(text.per_class)
    w = ridge_map(t, ft)
    t_img, ct_img = t @ w, ct @ w
    g = torch.Generator().manual_seed(0)
    aug, alpha = cea_features(ft, t_img, ct_img, torch.from_numpy(labels), 0.5, 0.0, "attentive", 0.07, g)
    before = torch.nn.functional.cosine_similarity(ft, t_img).mean()
    after = torch.nn.functional.cosine_similarity(aug, t_img).mean()
    assert after > before
    assert ((alpha > 0) & (alpha <= 1)).all() and alpha.std() > 0
    _, ones = cea_features(ft, t_img, ct_img, torch.from_numpy(labels), 0.5, 0.0, "one", 0.07, g)
    assert torch.equal(ones, torch.ones_like(ones))
    # the ridge map sends each class prompt near its class's mean image feature
    means = torch.stack([ft[torch.from_numpy(labels == c)].mean(0) for c in range(4)])
    assert (torch.nn.functional.cosine_similarity(ct_img, means) > 0.9).all()


def test_loss_weights_have_mean_one_and_keep_order():
    losses = np.array([0.1, 0.5, 2.0, 8.0])
    for transform in ("none", "clip", "sigmoid", "log1p"):
        w = loss_weights(losses, transform, clip=2.0)
        assert w.mean() == pytest.approx(1.0, rel=1e-5)
        assert (np.diff(w) >= 0).all()
    assert loss_weights(losses, "clip", clip=2.0).max() < loss_weights(losses, "none", 2.0).max()


def test_round_zero_is_uniform_and_later_rounds_use_the_loss():
    f, labels, text = _data()
    losses = np.random.default_rng(0).gamma(1.0, size=len(f)).astype(np.float32)
    sel = VeCAF(iterations=20)
    first = sel.select(_ctx(f, labels, text, losses=losses, steps=0), 12)
    assert sel.round_stats["weights"].startswith("uniform")
    later = sel.select(_ctx(f, labels, text, losses=losses, steps=10), 12)
    assert sel.round_stats["weights"] == "loss" and sel.round_stats["weight_max"] > 1
    assert len(set(first)) == len(set(later)) == 12


def test_weight_modes_select_differently_and_deterministically():
    f, labels, text = _data()
    losses = np.random.default_rng(1).gamma(0.5, size=len(f)).astype(np.float32)
    out = VeCAF(iterations=30, weight_mode="outside", lr=5e-3).select(_ctx(f, labels, text, 3, losses, 5), 10)
    again = VeCAF(iterations=30, weight_mode="outside", lr=5e-3).select(_ctx(f, labels, text, 3, losses, 5), 10)
    inside = VeCAF(iterations=30, weight_mode="inside", lr=5e-3).select(_ctx(f, labels, text, 3, losses, 5), 10)
    assert np.array_equal(out, again)
    assert not np.array_equal(np.sort(out), np.sort(inside))


def test_bad_options_are_named():
    from vecaf_bench.errors import UserError

    with pytest.raises(UserError, match="weight_mode must be one of outside, inside"):
        VeCAF(weight_mode="middle")
    with pytest.raises(UserError, match="alpha must be one of attentive, one"):
        VeCAF(alpha="half")


def test_ensemble_of_aligned_members_is_deterministic():
    f, labels, text = _data()
    a = VeCAF(iterations=10, ensemble=3, sigma=0.05).select(_ctx(f, labels, text, 4), 8)
    b = VeCAF(iterations=10, ensemble=3, sigma=0.05).select(_ctx(f, labels, text, 4), 8)
    assert np.array_equal(a, b) and len(set(a.tolist())) == 8
    from vecaf_bench.errors import UserError

    with pytest.raises(UserError, match="ensemble must be >= 1"):
        VeCAF(ensemble=0)

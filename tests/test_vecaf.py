"""VeCAF: CEA feature augmentation, ODS weights, and the selector end to end on synthetic data."""

import numpy as np
import pytest
import torch

from vecaf_bench.api import Capabilities, TextFeatures
from vecaf_bench.run.selection_round import build_context
from vecaf_bench_plugins.selectors.vecaf import VeCAF, cea_features, loss_weights, ridge_map


def _data(n=240, d=16, dt=8, k=4, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(k), n // k)
    centres = rng.normal(size=(k, d))
    f = centres[labels] + 0.5 * rng.normal(size=(n, d))
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    class_text = rng.normal(size=(k, dt))
    class_text /= np.linalg.norm(class_text, axis=1, keepdims=True)
    text = TextFeatures(per_sample=class_text[labels].astype(np.float32), per_class=class_text.astype(np.float32))
    return f.astype(np.float32), labels, text


def _logits_with_loss(losses, labels, num_classes):
    """Logits whose cross-entropy against `labels` is `losses` (0 at the label, v elsewhere)."""
    v = np.log(np.expm1(losses.astype(np.float64)) / (num_classes - 1))
    logits = np.repeat(v[:, None], num_classes, axis=1)
    logits[np.arange(len(labels)), labels] = 0.0
    return logits.astype(np.float32)


def _ctx(f, labels, text, seed=0, losses=None, steps=0):
    """The context the runner builds; the model's outputs give the per-sample losses asked for."""
    k = int(labels.max()) + 1
    outputs = None
    if losses is not None:
        logits = _logits_with_loss(losses, labels, k)

        def outputs(idx, what, mc, p):
            return {"logits": logits[idx]}, 1

    return build_context(selector="vecaf", capabilities=Capabilities(uses={"labels", "model", "text"}), features=f,
                         seed=seed, labels=labels, num_classes=k, trained_steps=steps, text=text, outputs=outputs)


def test_the_losses_reach_vecaf_through_the_model_outputs():
    f, labels, text = _data()
    losses = np.random.default_rng(0).gamma(1.0, size=len(f)).astype(np.float32) + 0.01
    assert np.allclose(_ctx(f, labels, text, losses=losses, steps=1).per_sample_loss(), losses, rtol=1e-4)


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
    losses = np.random.default_rng(0).gamma(1.0, size=len(f)).astype(np.float32) + 0.01
    sel = VeCAF(iterations=20)
    first = sel.select(_ctx(f, labels, text, losses=losses, steps=0), 12)
    assert first.stats["weights"].startswith("uniform")
    later = sel.select(_ctx(f, labels, text, losses=losses, steps=10), 12)
    assert later.stats["weights"] == "loss" and later.stats["weight_max"] > 1
    assert len(set(first.indices)) == len(set(later.indices)) == 12


def test_weight_modes_select_differently_and_deterministically():
    f, labels, text = _data()
    losses = np.random.default_rng(1).gamma(0.5, size=len(f)).astype(np.float32) + 0.01

    def pick(mode):
        return VeCAF(iterations=30, weight_mode=mode, lr=5e-3).select(_ctx(f, labels, text, 3, losses, 5), 10).indices

    out, again, inside = pick("outside"), pick("outside"), pick("inside")
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
    a = VeCAF(iterations=10, ensemble=3, sigma=0.05).select(_ctx(f, labels, text, 4), 8).indices
    b = VeCAF(iterations=10, ensemble=3, sigma=0.05).select(_ctx(f, labels, text, 4), 8).indices
    assert np.array_equal(a, b) and len(set(a.tolist())) == 8
    from vecaf_bench.errors import UserError

    with pytest.raises(UserError, match="ensemble must be >= 1"):
        VeCAF(ensemble=0)

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


# -- the ensemble, the shared pool loss, the text channel, the ablation options ---------------------


def _spy_centres(monkeypatch, sel):
    """Keep each member's fitted centres (normalised), in member order, before any alignment."""
    fitted = []
    fit = sel.fit_centres

    def spy(*args, **kwargs):
        theta = fit(*args, **kwargs)
        fitted.append(torch.nn.functional.normalize(theta, dim=1))
        return theta

    monkeypatch.setattr(sel, "fit_centres", spy)
    return fitted


def test_ensemble_members_have_their_own_seeds_and_stay_deterministic(monkeypatch):
    f, labels, text = _data()
    losses = np.random.default_rng(2).gamma(1.0, size=len(f)).astype(np.float32) + 0.01

    def run():
        sel = VeCAF(iterations=10, ensemble=3, pool_batch=60)
        fitted = _spy_centres(monkeypatch, sel)
        return sel.select(_ctx(f, labels, text, 4, losses, 5), 8), fitted

    first, centres = run()
    again, centres_again = run()
    assert np.array_equal(first.indices, again.indices) and len(set(first.indices.tolist())) == 8
    assert all(torch.equal(a, b) for a, b in zip(centres, centres_again, strict=True))
    # different inits (and minibatches): members' centres differ, before and after matching
    assert len(centres) == 3
    for m in (1, 2):
        assert (centres[0] * centres[m]).sum(1).mean() < 0.95
    stats = first.stats
    assert stats["ensemble"] == 3 and stats["ensemble_alignment"].startswith("hungarian")
    assert stats["ensemble_centre_cos_same_index"] < stats["ensemble_centre_cos"] < 0.99
    assert 0.0 <= stats["ensemble_pick_overlap"] <= 1.0
    # member 0 is the single selector: E = 1 picks what member 0 alone maps to
    single = VeCAF(iterations=10, pool_batch=60)
    one = _spy_centres(monkeypatch, single)
    single.select(_ctx(f, labels, text, 4, losses, 5), 8)
    assert torch.equal(one[0], centres[0])
    # another seed, another ensemble
    other = VeCAF(iterations=10, ensemble=3, pool_batch=60).select(_ctx(f, labels, text, 5, losses, 5), 8)
    assert not np.array_equal(np.sort(other.indices), np.sort(first.indices))


def test_member_seeds_depend_on_seed_round_and_member():
    from vecaf_bench_plugins.selectors.vecaf import member_generator

    f, labels, text = _data()

    def draw(seed, member, purpose=1, round=0):
        ctx = build_context(selector="vecaf", capabilities=Capabilities(), features=f, seed=seed, round=round)
        return torch.randint(10**9, (4,), generator=member_generator(ctx, member, purpose)).tolist()

    ctx0 = build_context(selector="vecaf", capabilities=Capabilities(), features=f, seed=3)
    assert draw(3, 0) == torch.randint(10**9, (4,), generator=ctx0.generator()).tolist()  # member 0: the round's
    draws = {tuple(draw(s, m, p, r)) for s in (0, 1) for m in (1, 2) for p in (0, 1) for r in (0, 1)}
    assert len(draws) == 16 and draw(1, 2, 0, 1) == draw(1, 2, 0, 1)


def test_matching_aligns_permuted_centres():
    from vecaf_bench_plugins.selectors.vecaf import align_centres

    c = torch.nn.functional.normalize(torch.randn(20, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(1))
    aligned, matched, same = align_centres(c, c[perm])
    assert torch.equal(aligned, c) and matched == pytest.approx(1.0) and same < 0.5


def test_the_pool_loss_is_computed_once_per_round(monkeypatch):
    from vecaf_bench_plugins.selectors import vecaf

    f, labels, text = _data()
    losses = np.random.default_rng(0).gamma(1.0, size=len(f)).astype(np.float32) + 0.01
    calls = []
    real = vecaf.loss_weights
    monkeypatch.setattr(vecaf, "loss_weights", lambda *a, **k: calls.append(1) or real(*a, **k))
    batches = {}
    for members in (1, 4):
        ctx = _ctx(f, labels, text, 1, losses, steps=5)
        out = VeCAF(iterations=5, ensemble=members).select(ctx, 6)
        assert out.stats["weights"] == "loss"
        batches[members] = ctx.forward_batches
    assert batches[4] == batches[1] == 1 and len(calls) == 2  # one weight computation per select()


def test_no_loss_weights_and_eta_zero_are_the_ablation_rows():
    f, labels, text = _data()
    losses = np.random.default_rng(0).gamma(1.0, size=len(f)).astype(np.float32) + 0.01
    ctx = _ctx(f, labels, text, 2, losses, steps=5)
    plain = VeCAF(iterations=10, loss_weights=False).select(ctx, 8)
    assert plain.stats["weights"] == "uniform (loss_weights false)" and "weight_max" not in plain.stats
    assert ctx.forward_batches == 0  # no model read at all
    # without loss weights after training = what round 0 (uniform) picks
    round0 = VeCAF(iterations=10).select(_ctx(f, labels, text, 2, losses, steps=0), 8)
    assert np.array_equal(plain.indices, round0.indices)
    ods = VeCAF(iterations=10, eta=0).select(_ctx(f, labels, text, 2, losses, steps=5), 8)
    assert ods.stats["text_source"] == "none (eta 0)" and "prompt_to_class_mean_cos" not in ods.stats
    assert ods.stats["weights"] == "loss"


def test_ablation_options_are_validated():
    from vecaf_bench.errors import UserError

    with pytest.raises(UserError, match="loss_weights must be true or false"):
        VeCAF(loss_weights="no")
    with pytest.raises(UserError, match=r"eta must be >= 0 \(0 turns CEA off: ODS alone\), got -1"):
        VeCAF(eta=-1)
    with pytest.raises(UserError, match="eta must be a number"):
        VeCAF(eta="high")
    with pytest.raises(UserError, match="sigma must be >= 0"):
        VeCAF(sigma=-0.1)
    with pytest.raises(UserError, match="ensemble must be >= 1"):
        VeCAF(ensemble=1.5)
    assert VeCAF(eta=0, loss_weights=False).use_loss_weights is False


def test_the_text_channel_is_recorded_on_synthetic_captions_and_shared_space():
    f, labels, text = _data()
    rng = np.random.default_rng(5)
    caps = TextFeatures(per_sample=rng.normal(size=(len(f), 8)).astype(np.float32), per_class=text.per_class,
                        source="captions")
    stats = VeCAF(iterations=5).select(_ctx(f, labels, caps), 6).stats
    assert stats["text_source"] == "captions" and stats["text_map"] == "ridge map fitted with labels"
    assert stats["prompt_to_class_mean_cos"] < 0.9  # text that is not the label: prompts are not class means
    shared = TextFeatures(per_sample=f[:, :16] * 0 + f, per_class=np.eye(4, 16, dtype=np.float32), shared_space=True)
    stats = VeCAF(iterations=5).select(_ctx(f, labels, shared), 6).stats
    assert stats["text_map"] == "shared space" and stats["text_source"] == "class prompts"


def test_class_prompts_reduce_cea_to_class_means_on_digits(tmp_path):
    """Real data: scikit-learn's digits (pixels as features) and MiniLM's class prompts. The ridge
    map sends each prompt onto its class-mean image feature: the text channel carries the label."""
    from sklearn.datasets import load_digits

    from vecaf_bench.text import text_features
    from vecaf_bench_plugins.datasets.embedded import DIGIT_NAMES
    from vecaf_bench_plugins.text_encoders.minilm import MiniLM

    d = load_digits()
    f = d.data.astype(np.float32)
    labels = d.target.astype(np.int64)
    text = text_features(MiniLM(), classes=DIGIT_NAMES, labels=labels, cache_root=tmp_path)
    assert text.source == "class prompts" and not text.shared_space
    stats = VeCAF(iterations=5).select(_ctx(f, labels, text), 20).stats
    assert stats["text_source"] == "class prompts" and stats["text_map"] == "ridge map fitted with labels"
    assert stats["prompt_to_class_mean_cos_min"] >= 0.99999 and stats["prompt_to_class_mean_cos"] <= 1.0 + 1e-6

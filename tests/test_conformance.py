"""Every installed selector passes `vecaf_bench.testing`; broken ones fail it; coreset is a 2-approximation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from vecaf_bench.api import SelectionContext
from vecaf_bench.pluginmanager import PluginHost
from vecaf_bench.testing import (
    check_count_and_range,
    check_deterministic,
    check_respects_earlier,
    check_selector,
    check_uses,
    check_whole_pool,
    make_pool,
)

_HOST = PluginHost()
SELECTORS = _HOST.selectors().names()


def test_builtins_are_discovered():
    assert {"random", "coreset", "full"} <= set(SELECTORS)


@pytest.mark.parametrize("name", SELECTORS)
def test_selector_conforms(name):
    factory = _HOST.selectors().get(name).factory
    check_selector(factory, name=name)


# -- deliberately broken selectors ---------------------------------------------------------------
def _remaining(ctx):
    return np.setdiff1d(np.arange(ctx.pool_size), ctx.selected)


class Duplicates:
    uses = frozenset()

    def select(self, ctx, count):
        return [int(_remaining(ctx)[0])] * count


class WrongCount:
    uses = frozenset()

    def select(self, ctx, count):
        return _remaining(ctx)[: max(count - 1, 0)]


class OutOfRange:
    uses = frozenset()

    def select(self, ctx, count):
        return np.append(_remaining(ctx)[: count - 1], ctx.pool_size)


class IgnoresEarlier:
    uses = frozenset()

    def select(self, ctx, count):
        return np.arange(count)


class Unseeded:
    uses = frozenset()

    def select(self, ctx, count):
        return np.random.default_rng().choice(_remaining(ctx), size=count, replace=False)


class FailsOnOneClass:
    uses = frozenset({"labels"})

    def select(self, ctx, count):
        if len(np.unique(ctx.labels)) < 2:
            raise ValueError("need two classes")
        return _remaining(ctx)[:count]


class Floats:
    uses = frozenset()

    def select(self, ctx, count):
        return _remaining(ctx)[:count].astype(np.float64)


class UnknownUses:
    uses = frozenset({"test_split"})

    def select(self, ctx, count):
        return _remaining(ctx)[:count]


class WritesFeatures:
    uses = frozenset()

    def select(self, ctx, count):
        ctx.features /= np.linalg.norm(ctx.features, axis=1, keepdims=True)
        return _remaining(ctx)[:count]


@pytest.mark.parametrize(
    "factory, problem",
    [
        (Duplicates, "returned duplicates"),
        (WrongCount, r"returned \d+ indices where \d+ were asked for"),
        (OutOfRange, "outside the pool"),
        (IgnoresEarlier, "already selected in earlier rounds"),
        (Unseeded, "check 'deterministic'"),
        (FailsOnOneClass, "check 'single class'.*ValueError: need two classes"),
        (Floats, "integer pool indices"),
        (UnknownUses, "unknown uses"),
        (WritesFeatures, "read-only"),
    ],
)
def test_broken_selector_fails_with_its_name(factory, problem):
    with pytest.raises(AssertionError, match=f"selector 'broken'.*{problem}"):
        check_selector(factory, name="broken")


def test_message_names_the_factory_by_default():
    with pytest.raises(AssertionError, match="selector 'Duplicates'"):
        check_selector(Duplicates)


def test_individual_checks_are_usable_alone():
    check_uses(Duplicates, name="dup")  # its `uses` is fine; only what it returns is wrong
    check_whole_pool(_HOST.selectors().get("full").factory, name="full")
    with pytest.raises(AssertionError, match="selector 'dup'.*duplicates"):
        check_count_and_range(Duplicates, name="dup")
    with pytest.raises(AssertionError, match="selector 'early'.*earlier rounds"):
        check_respects_earlier(IgnoresEarlier, name="early")
    with pytest.raises(AssertionError, match="selector 'rng'.*deterministic"):
        check_deterministic(Unseeded, name="rng")


class _DeviceTensor(torch.Tensor):
    """Stands in for a CUDA tensor on a CPU-only machine: numpy cannot read it directly."""

    def __array__(self, *args, **kwargs):
        raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() first.")


class ReturnsDeviceTensor:
    uses = frozenset()

    def select(self, ctx, count):
        remaining = torch.as_tensor(_remaining(ctx))
        perm = torch.randperm(len(remaining), generator=ctx.generator())
        return remaining[perm[:count]].as_subclass(_DeviceTensor)


def test_a_selector_may_return_a_device_tensor():
    # regression: validate_selection called np.asarray on the tensor before moving it to the CPU
    check_selector(ReturnsDeviceTensor, name="on_gpu")


def test_options_reach_the_factory():
    coreset = _HOST.selectors().get("coreset").factory
    check_selector(coreset, options={"chunk": 2}, name="coreset")
    with pytest.raises(AssertionError, match="selector 'coreset': its factory raised TypeError"):
        check_selector(coreset, options={"no_such_option": 1}, name="coreset")


# -- coreset properties -------------------------------------------------------------------------
def _coreset(features, count, seed, selected=()):
    ctx = SelectionContext(features=features, selected=np.asarray(selected, dtype=np.int64), seed=seed)
    return np.asarray(_HOST.selectors().get("coreset").factory().select(ctx, count))


def _unit(features):
    f = features.astype(np.float64)
    return f / np.linalg.norm(f, axis=1, keepdims=True)  # coreset works on L2-normalised features


def _radius(dist, centres):
    return dist[:, list(centres)].min(axis=1).max()


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("dim", [2, 5])
def test_coreset_is_within_twice_the_optimal_k_center_radius(seed, dim):
    n, k = 10, 3
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n, dim)).astype(np.float32)
    u = _unit(feats)
    dist = np.linalg.norm(u[:, None] - u[None], axis=-1)
    optimum = min(_radius(dist, c) for c in itertools.combinations(range(n), k))
    greedy = _radius(dist, _coreset(feats, k, seed))
    assert optimum > 0
    assert greedy <= 2 * optimum + 1e-5, (greedy, optimum)


def test_coreset_hits_more_clusters_than_random():
    sizes = [120, 40, 15, 8, 5, 4, 3, 2, 2, 1]  # imbalanced: random sampling misses the small ones
    random_factory = _HOST.selectors().get("random").factory
    hits_coreset, hits_random = [], []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        centres = rng.normal(size=(len(sizes), 32))
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        cluster = np.repeat(np.arange(len(sizes)), sizes)
        feats = (centres[cluster] + 0.02 * rng.normal(size=(len(cluster), 32))).astype(np.float32)
        k = len(sizes)
        hits_coreset.append(len(np.unique(cluster[_coreset(feats, k, seed)])))
        ctx = SelectionContext(features=feats, selected=np.zeros(0, dtype=np.int64), seed=seed)
        hits_random.append(len(np.unique(cluster[random_factory().select(ctx, k)])))
    # well-separated clusters and k = #clusters: greedy k-center puts one centre in each
    assert hits_coreset == [len(sizes)] * 5
    assert sum(hits_random) < sum(hits_coreset)


def test_make_pool_is_seeded_and_clustered():
    a, la = make_pool(seed=3)
    b, lb = make_pool(seed=3)
    assert a.dtype == np.float32 and np.array_equal(a, b) and np.array_equal(la, lb)
    assert set(la.tolist()) == set(range(4))
    _, one = make_pool(seed=3, num_classes=1)
    assert set(one.tolist()) == {0}


def test_coreset_bf16_covers_the_pool_like_fp32():
    """bf16 matvecs (half the bytes per pick) only with the same quality: the covering radius
    and mean nearest-pick distance of fp32's greedy, and every cluster hit."""
    factory = _HOST.selectors().get("coreset").factory
    for seed in range(3):
        feats, labels = make_pool(n=3000, dim=64, clusters=40, seed=seed)
        ctx = SelectionContext(features=feats, selected=np.zeros(0, dtype=np.int64), seed=seed)
        fp32 = factory().select(ctx, 60)
        bf16 = factory(precision="bf16").select(ctx, 60)
        u = _unit(feats)

        def cover(idx, u=u):
            d = np.sqrt(np.clip(2 - 2 * u @ u[idx].T, 0, None)).min(1)
            return d.max(), d.mean()

        (r32, m32), (r16, m16) = cover(fp32), cover(bf16)
        assert r16 <= r32 * 1.05 and m16 <= m32 * 1.05
        assert len(set(labels[bf16])) == len(set(labels[fp32])) == 40

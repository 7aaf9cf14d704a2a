"""Conformance checks for selector plugins: call them from your plugin's own tests.

    from vecaf_bench.testing import check_selector
    from my_package.greedy import Greedy

    def test_greedy_conforms():
        check_selector(Greedy, options={"chunk": 64}, name="greedy")

`check_selector` runs every check below on small synthetic pools (clustered, L2-normalisable
float32 features from a seeded numpy RNG, with labels); each check is also public on its own.
A failed check raises `AssertionError` whose message names the selector, the check and what
went wrong. The pools are tiny, so a whole `check_selector` takes well under a second for a
selector that is linear or quadratic in the pool size.

The context is built the way the runner builds it: features are a read-only float32 array
(the runner passes a read-only memory map), `selected` is int64, `labels` is passed only to a
selector with "labels" in `uses`, and a selector with "model" in `uses` gets a small linear
model over the features plus a matching `per_sample_loss`. A selector with
`takes_whole_pool = True` (such as `full`) is asked for the whole remaining pool, as the
runner does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from .errors import PluginError
from .selection import KNOWN_USES, SelectionContext, validate_selection

__all__ = [
    "check_selector",
    "check_uses",
    "check_count_and_range",
    "check_deterministic",
    "check_respects_earlier",
    "check_single_class",
    "check_whole_pool",
    "make_pool",
    "make_context",
    "selector_name",
]

Factory = Callable[..., Any]

# the synthetic pool every check uses unless it says otherwise
POOL_SIZE = 48
DIM = 16
CLUSTERS = 4


def make_pool(
    n: int = POOL_SIZE, dim: int = DIM, clusters: int = CLUSTERS, seed: int = 0, num_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(features, labels): `n` float32 points in `clusters` tight, well-separated clusters.

    Every cluster gets at least one point; the label of a point is its cluster (or, with
    `num_classes`, its cluster modulo `num_classes`: num_classes=1 gives a single class).
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    member = np.concatenate([np.arange(clusters), rng.integers(0, clusters, size=max(0, n - clusters))])[:n]
    rng.shuffle(member)
    feats = centres[member] + 0.05 * rng.normal(size=(n, dim))
    feats *= rng.uniform(0.5, 2.0, size=(n, 1))  # not unit length: the selector may normalise
    labels = member % (num_classes or clusters)
    return feats.astype(np.float32), labels.astype(np.int64)


class _LinearProbe(torch.nn.Module):
    """A stand-in model for selectors with "model" in `uses`: logits of pool features."""

    def __init__(self, dim: int, num_classes: int, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.fc = torch.nn.Linear(dim, num_classes)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(self.fc.weight.shape, generator=g) * 0.1)
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def make_context(
    selector: Any,
    features: np.ndarray,
    labels: np.ndarray,
    *,
    selected: Sequence[int] | np.ndarray = (),
    seed: int = 0,
    round: int = 0,
    rounds: int = 1,
) -> SelectionContext:
    """A `SelectionContext` as the runner builds it, giving the selector only what it `uses`."""
    uses = frozenset(getattr(selector, "uses", frozenset()))
    feats = np.array(features, dtype=np.float32, copy=True)
    feats.setflags(write=False)
    num_classes = int(labels.max()) + 1 if len(labels) else 0
    ctx = SelectionContext(
        features=feats,
        selected=np.asarray(selected, dtype=np.int64),
        seed=seed,
        round=round,
        rounds=rounds,
        num_classes=num_classes,
        labels=np.array(labels, dtype=np.int64) if "labels" in uses else None,
    )
    if "model" in uses:
        model = _LinearProbe(feats.shape[1], max(num_classes, 1), seed).eval()
        ctx.model = model
        target = torch.as_tensor(labels, dtype=torch.long)

        def per_sample_loss(idx: np.ndarray | None = None) -> np.ndarray:
            if idx is None:
                idx = np.arange(len(feats))
            idx_t = torch.as_tensor(np.asarray(idx, dtype=np.int64))
            with torch.no_grad():
                logits = model(torch.from_numpy(np.array(feats[idx_t.numpy()])))
                loss = torch.nn.functional.cross_entropy(logits, target[idx_t], reduction="none")
            return loss.numpy()

        ctx.per_sample_loss = per_sample_loss
        ctx.trained_steps = 1  # the stand-in model counts as trained: loss-based paths run
    if "text" in uses:
        # class-prompt-like text: one random unit vector per class, shared by its samples
        rng = np.random.default_rng(seed + 17)
        per_class = rng.normal(size=(max(num_classes, 1), 8)).astype(np.float32)
        per_class /= np.linalg.norm(per_class, axis=1, keepdims=True)
        ctx.text = SimpleNamespace(per_sample=per_class[labels], per_class=per_class, shared_space=False)
    return ctx


def selector_name(factory: Factory, name: str | None = None) -> str:
    return name or getattr(factory, "__name__", None) or type(factory).__name__


def _build(factory: Factory, options: Mapping[str, Any] | None, name: str) -> Any:
    try:
        return factory(**dict(options or {}))
    except Exception as e:
        raise AssertionError(
            f"selector '{name}': its factory raised {type(e).__name__}: {e} (options: {dict(options or {})})"
        ) from e


def _whole_pool(selector: Any) -> bool:
    return bool(getattr(selector, "takes_whole_pool", False))


def _select(selector: Any, name: str, check: str, ctx: SelectionContext, count: int) -> np.ndarray:
    """Run select() and the runner's own validation; any failure becomes an AssertionError."""
    earlier = np.array(ctx.selected, copy=True)
    where = f"pool {ctx.pool_size}, count {count}, {len(earlier)} earlier picks, seed {ctx.seed}, round {ctx.round}"
    try:
        picked = selector.select(ctx, count)
    except Exception as e:
        raise AssertionError(
            f"selector '{name}' failed check '{check}': select() raised {type(e).__name__}: {e} ({where})"
        ) from e
    try:
        arr = validate_selection(name, picked, count, ctx.pool_size, earlier)
    except PluginError as e:
        raise AssertionError(f"check '{check}' failed: {e} ({where})") from None
    if not np.array_equal(np.asarray(ctx.selected), earlier):
        raise AssertionError(
            f"selector '{name}' failed check '{check}': select() modified ctx.selected in place ({where})"
        )
    return arr


def _count(selector: Any, pool_size: int, earlier: int, wanted: int) -> int:
    """The count the runner would ask for: the rest of the pool for a whole-pool selector."""
    return pool_size - earlier if _whole_pool(selector) else min(wanted, pool_size - earlier)


# -- the checks --------------------------------------------------------------------------------
def check_uses(factory: Factory, *, options: Mapping[str, Any] | None = None, name: str | None = None) -> None:
    """`uses` is a set of known names (labels, model, text)."""
    name = selector_name(factory, name)
    selector = _build(factory, options, name)
    uses: Any = getattr(selector, "uses", frozenset())
    if isinstance(uses, str) or not all(isinstance(u, str) for u in uses):
        raise AssertionError(f"selector '{name}' failed check 'uses': `uses` must be a set of strings, got {uses!r}")
    unknown = sorted(set(uses) - KNOWN_USES)
    if unknown:
        raise AssertionError(
            f"selector '{name}' failed check 'uses': unknown uses {unknown}; known: {sorted(KNOWN_USES)}"
        )
    if not callable(getattr(selector, "select", None)):
        raise AssertionError(f"selector '{name}' failed check 'uses': it has no select(ctx, count) method")


def check_count_and_range(
    factory: Factory, *, options: Mapping[str, Any] | None = None, name: str | None = None
) -> None:
    """Exactly `count` unique integer indices inside the pool, for a few counts and seeds."""
    name = selector_name(factory, name)
    feats, labels = make_pool(seed=1)
    n = len(feats)
    for count, seed in ((1, 0), (5, 1), (n // 3, 2)):
        selector = _build(factory, options, name)
        c = _count(selector, n, 0, count)
        _select(selector, name, "count and range", make_context(selector, feats, labels, seed=seed), c)


def check_deterministic(factory: Factory, *, options: Mapping[str, Any] | None = None, name: str | None = None) -> None:
    """Same seed and round -> same indices: twice on one instance, and on a fresh instance."""
    name = selector_name(factory, name)
    feats, labels = make_pool(seed=2)
    n = len(feats)
    rng = np.random.default_rng(2)
    earlier = np.sort(rng.choice(n, size=6, replace=False))
    for sel, rnd in (((), 0), (earlier, 1)):
        first = _build(factory, options, name)
        count = _count(first, n, len(sel), 7)

        a, b, c = (
            _select(s, name, "deterministic", make_context(s, feats, labels, selected=sel, seed=11, round=rnd), count)
            for s in (first, first, _build(factory, options, name))
        )
        for what, other in (("a second call on the same instance", b), ("a fresh instance", c)):
            if not np.array_equal(a, other):
                raise AssertionError(
                    f"selector '{name}' failed check 'deterministic': with seed 11, round {rnd} and "
                    f"{len(sel)} earlier picks it returned {a.tolist()} and then, on {what}, {other.tolist()}. "
                    "Draw randomness only from ctx.rng() or ctx.generator()."
                )


def check_respects_earlier(
    factory: Factory, *, options: Mapping[str, Any] | None = None, name: str | None = None
) -> None:
    """With earlier picks in `ctx.selected`, none of them is returned again."""
    name = selector_name(factory, name)
    feats, labels = make_pool(seed=3)
    n = len(feats)
    rng = np.random.default_rng(3)
    # earlier picks: a random set, and a whole cluster (the natural next pick for many selectors)
    for earlier in (rng.choice(n, size=n // 4, replace=False), np.flatnonzero(labels == labels[0])):
        selector = _build(factory, options, name)
        count = _count(selector, n, len(earlier), 6)
        ctx = make_context(selector, feats, labels, selected=earlier, seed=4, round=1, rounds=3)
        _select(selector, name, "respects earlier picks", ctx, count)


def check_single_class(factory: Factory, *, options: Mapping[str, Any] | None = None, name: str | None = None) -> None:
    """A pool where every label is the same class (num_classes = 1)."""
    name = selector_name(factory, name)
    feats, labels = make_pool(seed=5, num_classes=1)
    n = len(feats)
    for earlier in (np.zeros(0, dtype=np.int64), np.arange(0, n, 5)):
        selector = _build(factory, options, name)
        count = _count(selector, n, len(earlier), 8)
        ctx = make_context(selector, feats, labels, selected=earlier, seed=5, round=int(len(earlier) > 0), rounds=2)
        _select(selector, name, "single class", ctx, count)


def check_whole_pool(factory: Factory, *, options: Mapping[str, Any] | None = None, name: str | None = None) -> None:
    """count = pool size with no earlier picks, and count = the rest of the pool with some."""
    name = selector_name(factory, name)
    feats, labels = make_pool(n=24, seed=6)
    n = len(feats)
    for earlier in (np.zeros(0, dtype=np.int64), np.array([0, 3, 7, 8, 20], dtype=np.int64)):
        selector = _build(factory, options, name)
        count = n - len(earlier)
        ctx = make_context(selector, feats, labels, selected=earlier, seed=6, round=int(len(earlier) > 0), rounds=2)
        picked = _select(selector, name, "budget = remaining pool", ctx, count)
        missing = np.setdiff1d(np.setdiff1d(np.arange(n), earlier), picked)
        if len(missing):  # implied by validate_selection; kept as a plain statement of the check
            raise AssertionError(
                f"selector '{name}' failed check 'budget = remaining pool': did not return {missing.tolist()}"
            )


CHECKS = (
    check_uses,
    check_count_and_range,
    check_deterministic,
    check_respects_earlier,
    check_single_class,
    check_whole_pool,
)


def check_selector(factory: Factory, *, options: Mapping[str, Any] | None = None, name: str | None = None) -> None:
    """Run every conformance check on the selector built by `factory(**options)`.

    `name` is used in messages (default: the factory's name). Raises AssertionError on the
    first failed check.
    """
    name = selector_name(factory, name)
    for check in CHECKS:
        check(factory, options=options, name=name)

"""The selector conformance kit: call it from your plugin's own tests.

    from vecaf_bench.testing import check_selector
    from my_package.greedy import Greedy

    def test_greedy_conforms():
        check_selector(Greedy, options={"chunk": 64}, name="greedy")

`check_selector` runs every check below on small synthetic pools (clustered float32 features
from a seeded numpy RNG, with labels); each check is also public on its own. A failed check
raises `AssertionError` whose message names the selector, the check and what went wrong. The
pools are tiny: a whole `check_selector` takes a second or two.

The context is the one a real run builds: it comes from the engine's own `build_context`, holds
only what the selector's `Capabilities` declare (an undeclared read fails with a message that
says what to declare), and a model-using selector gets a real tiny convolutional model that
takes *images* (8 x 8 RGB renderings of the pool, through timm's eval transform), so
`ctx.pool_outputs()` runs the engine's forward path and a selector that feeds features to a
model fails here, not in a run. Round 0 has an untrained head (`trained_steps == 0`); later
rounds a head trained for a few steps on the pool.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..api import Capabilities, SelectionContext, TextFeatures, capabilities_of
from ..data import ArrayImages
from ..errors import PluginError
from ..run.outputs import outputs_provider
from ..run.selection_round import SelectorSlot, build_context, run_selection
from ..transforms import Normalize, eval_transform

__all__ = [
    "build_context",
    "check_selector",
    "check_capabilities",
    "check_uses",
    "check_count_and_range",
    "check_deterministic",
    "check_seed_used",
    "check_respects_earlier",
    "check_single_class",
    "check_whole_pool",
    "check_round_zero",
    "make_pool",
    "make_context",
    "selector_name",
]

Factory = Callable[..., Any]

# the synthetic pool every check uses unless it says otherwise
POOL_SIZE = 48
DIM = 16
CLUSTERS = 4
IMAGE = 8  # pixels of the tiny model's images
TRAINED_STEPS = 8


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


# -- the tiny real model ---------------------------------------------------------------------------
class _TinyNet(nn.Module):
    """Images -> conv -> pooled 8-d embedding -> linear head, with dropout before the head."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


class _TinyBackbone:
    name = "kit-tiny"
    fingerprint = "kit-tiny"
    data_config: dict[str, Any] = {
        "input_size": (3, IMAGE, IMAGE),
        "interpolation": "bilinear",
        "mean": (0.5, 0.5, 0.5),
        "std": (0.25, 0.25, 0.25),
        "crop_pct": 1.0,
    }

    def embed(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        assert isinstance(model, _TinyNet)
        return model.embed(images)

    def classifier(self, model: nn.Module) -> nn.Module:
        assert isinstance(model, _TinyNet)
        return model.head


def _images(features: np.ndarray) -> ArrayImages:
    """The pool rendered as 8 x 8 RGB images: a fixed projection of each feature row."""
    proj = np.random.default_rng(1234).normal(size=(features.shape[1], IMAGE * IMAGE * 3)) / np.sqrt(features.shape[1])
    z = np.asarray(features, dtype=np.float64) @ proj
    pixels = (255.0 / (1.0 + np.exp(-z))).astype(np.uint8).reshape(-1, IMAGE, IMAGE, 3)
    labels = np.zeros(len(pixels), dtype=np.int64)  # the forward path never reads them
    return ArrayImages(pixels, labels, f"kit-{len(pixels)}")


@functools.lru_cache(maxsize=16)
def _model(key: bytes, shape: tuple[int, int], num_classes: int, seed: int, trained: bool) -> _TinyNet:
    features = np.frombuffer(key[: shape[0] * shape[1] * 4], dtype=np.float32).reshape(shape)
    labels = np.frombuffer(key[shape[0] * shape[1] * 4 :], dtype=np.int64)
    torch.manual_seed(seed)
    net = _TinyNet(num_classes)
    if trained:  # a few full-batch steps on the pool: a head that has learnt something
        images, t = _images(features), eval_transform(_TinyBackbone.data_config)
        x = Normalize(_TinyBackbone.data_config, torch.device("cpu"))(
            torch.stack([torch.from_numpy(np.asarray(t(images.image(i)))) for i in range(len(images))])
        )
        opt = torch.optim.SGD(net.parameters(), lr=0.5)
        for _ in range(TRAINED_STEPS):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), torch.as_tensor(np.array(labels))).backward()
            opt.step()
    return net.eval()


def make_context(
    selector: Any,
    features: np.ndarray,
    labels: np.ndarray,
    *,
    selected: Sequence[int] | np.ndarray = (),
    seed: int = 0,
    round: int = 0,
    rounds: int = 1,
    name: str | None = None,
) -> SelectionContext:
    """A context as the runner builds it (the engine's `build_context`), with only what the
    selector's capabilities declare. Round 0 has an untrained head, later rounds a trained one."""
    name = name or type(selector).__name__
    caps = capabilities_of(selector, name)
    num_classes = max(int(labels.max()) + 1 if len(labels) else 1, 1)
    trained = round > 0
    outputs = model = None
    if "model" in caps.uses:
        feats32 = np.ascontiguousarray(features, dtype=np.float32)
        key = feats32.tobytes() + np.ascontiguousarray(labels, dtype=np.int64).tobytes()
        model = _model(key, feats32.shape, num_classes, seed, trained)
        cfg = _TinyBackbone.data_config
        outputs = outputs_provider(
            model, _TinyBackbone(), _images(feats32), eval_transform(cfg), Normalize(cfg, torch.device("cpu")),
            16, 0, seed, round,
        )
    text = None
    if "text" in caps.uses:  # class-prompt-like text: one random unit vector per class
        rng = np.random.default_rng(seed + 17)
        per_class = rng.normal(size=(num_classes, 8)).astype(np.float32)
        per_class /= np.linalg.norm(per_class, axis=1, keepdims=True)
        text = TextFeatures(per_sample=per_class[labels], per_class=per_class)
    return build_context(
        selector=name,
        capabilities=caps,
        features=np.array(features, dtype=np.float32, copy=True),
        selected=np.asarray(selected, dtype=np.int64),
        seed=seed,
        round=round,
        rounds=rounds,
        num_classes=num_classes,
        trained_steps=TRAINED_STEPS if trained else 0,
        labels=np.asarray(labels, dtype=np.int64) if "labels" in caps.uses else None,
        text=text,
        outputs=outputs,
        model=model,
    )


def selector_name(factory: Factory, name: str | None = None) -> str:
    return name or getattr(factory, "__name__", None) or type(factory).__name__


def _build(factory: Factory, options: Mapping[str, Any] | None, name: str) -> Any:
    try:
        return factory(**dict(options or {}))
    except Exception as e:
        raise AssertionError(
            f"selector '{name}': its factory raised {type(e).__name__}: {e} (options: {dict(options or {})})"
        ) from e


def _caps(selector: Any, name: str) -> Capabilities:
    try:
        return capabilities_of(selector, name)
    except PluginError as e:
        raise AssertionError(f"selector '{name}' failed check 'capabilities': {e}") from None


def _select(selector: Any, name: str, check: str, ctx: SelectionContext, count: int) -> np.ndarray:
    """The engine's run_selection (select() and its validation); any failure is an AssertionError."""
    earlier = np.array(ctx.selected, copy=True)
    where = f"pool {ctx.pool_size}, count {count}, {len(earlier)} earlier picks, seed {ctx.seed}, round {ctx.round}"
    slot = SelectorSlot(name, selector, _caps(selector, name))
    try:
        picked = run_selection(slot, ctx, count)
    except PluginError as e:
        cause = e.__cause__
        if cause is not None and not isinstance(cause, PluginError):
            raise AssertionError(
                f"selector '{name}' failed check '{check}': select() raised {type(cause).__name__}: {cause} ({where})"
            ) from cause
        raise AssertionError(f"selector '{name}' failed check '{check}': {e} ({where})") from None
    return picked.indices


def _count(selector: Any, name: str, pool_size: int, earlier: int, wanted: int) -> int:
    """The count the runner would ask for: the rest of the pool for a whole-pool selector."""
    return pool_size - earlier if _caps(selector, name).whole_pool else min(wanted, pool_size - earlier)


# -- the checks --------------------------------------------------------------------------------
def check_capabilities(
    factory: Factory, *, options: Mapping[str, Any] | None = None, name: str | None = None
) -> None:
    """`capabilities` is a `Capabilities` with known uses, and there is a select(ctx, count)."""
    name = selector_name(factory, name)
    selector = _build(factory, options, name)
    _caps(selector, name)  # the engine's own reading: a Capabilities with known uses (or the legacy attributes)
    if not callable(getattr(selector, "select", None)):
        raise AssertionError(f"selector '{name}' failed check 'capabilities': it has no select(ctx, count) method")


check_uses = check_capabilities  # its name before API 1.0


def check_count_and_range(
    factory: Factory, *, options: Mapping[str, Any] | None = None, name: str | None = None
) -> None:
    """Exactly `count` unique integer indices inside the pool, for a few counts, seeds and rounds."""
    name = selector_name(factory, name)
    feats, labels = make_pool(seed=1)
    n = len(feats)
    for count, seed, rnd in ((1, 0, 0), (5, 1, 1), (n // 3, 2, 1)):
        selector = _build(factory, options, name)
        c = _count(selector, name, n, 0, count)
        ctx = make_context(selector, feats, labels, seed=seed, round=rnd, rounds=2, name=name)
        _select(selector, name, "count and range", ctx, c)


def check_round_zero(factory: Factory, *, options: Mapping[str, Any] | None = None, name: str | None = None) -> None:
    """Round 0: no earlier picks and, for a model-using selector, an untrained head."""
    name = selector_name(factory, name)
    feats, labels = make_pool(seed=7)
    selector = _build(factory, options, name)
    count = _count(selector, name, len(feats), 0, 6)
    ctx = make_context(selector, feats, labels, seed=3, round=0, rounds=3, name=name)
    _select(selector, name, "round 0", ctx, count)


def check_deterministic(factory: Factory, *, options: Mapping[str, Any] | None = None, name: str | None = None) -> None:
    """Same seed and round -> same indices: twice on one instance, and on a fresh instance."""
    name = selector_name(factory, name)
    feats, labels = make_pool(seed=2)
    n = len(feats)
    rng = np.random.default_rng(2)
    earlier = np.sort(rng.choice(n, size=6, replace=False))
    for sel, rnd in (((), 0), (earlier, 1)):
        first = _build(factory, options, name)
        count = _count(first, name, n, len(sel), 7)

        a, b, c = (
            _select(
                s, name, "deterministic",
                make_context(s, feats, labels, selected=sel, seed=11, round=rnd, rounds=2, name=name), count,
            )
            for s in (first, first, _build(factory, options, name))
        )
        for what, other in (("a second call on the same instance", b), ("a fresh instance", c)):
            if not np.array_equal(a, other):
                raise AssertionError(
                    f"selector '{name}' failed check 'deterministic': with seed 11, round {rnd} and "
                    f"{len(sel)} earlier picks it returned {a.tolist()} and then, on {what}, {other.tolist()}. "
                    "Draw randomness only from ctx.rng() or ctx.generator()."
                )


def check_seed_used(factory: Factory, *, options: Mapping[str, Any] | None = None, name: str | None = None) -> None:
    """A selector that declares `randomized` (the default) must be able to give different picks
    for different seeds: one that ignores the seed would make every seed of a suite the same run."""
    name = selector_name(factory, name)
    selector = _build(factory, options, name)
    caps = _caps(selector, name)
    if not caps.randomized or caps.whole_pool:
        return
    feats, labels = make_pool(n=60, clusters=6, seed=8)
    picks = set()
    for seed in range(6):
        s = _build(factory, options, name)
        ctx = make_context(s, feats, labels, seed=seed, round=1, rounds=2, name=name)
        picks.add(tuple(sorted(_select(s, name, "seed used", ctx, 5).tolist())))
        if len(picks) > 1:
            return
    raise AssertionError(
        f"selector '{name}' failed check 'seed used': seeds 0-5 all gave the picks {sorted(picks.pop())}. "
        "Draw randomness from ctx.rng() or ctx.generator(), or declare Capabilities(randomized=False) "
        "if the method is deterministic."
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
        count = _count(selector, name, n, len(earlier), 6)
        ctx = make_context(selector, feats, labels, selected=earlier, seed=4, round=1, rounds=3, name=name)
        _select(selector, name, "respects earlier picks", ctx, count)


def check_single_class(factory: Factory, *, options: Mapping[str, Any] | None = None, name: str | None = None) -> None:
    """A pool where every label is the same class (num_classes = 1)."""
    name = selector_name(factory, name)
    feats, labels = make_pool(seed=5, num_classes=1)
    n = len(feats)
    for earlier in (np.zeros(0, dtype=np.int64), np.arange(0, n, 5)):
        selector = _build(factory, options, name)
        count = _count(selector, name, n, len(earlier), 8)
        rnd = int(len(earlier) > 0)
        ctx = make_context(selector, feats, labels, selected=earlier, seed=5, round=rnd, rounds=2, name=name)
        _select(selector, name, "single class", ctx, count)


def check_whole_pool(factory: Factory, *, options: Mapping[str, Any] | None = None, name: str | None = None) -> None:
    """count = pool size with no earlier picks, and count = the rest of the pool with some."""
    name = selector_name(factory, name)
    feats, labels = make_pool(n=24, seed=6)
    n = len(feats)
    for earlier in (np.zeros(0, dtype=np.int64), np.array([0, 3, 7, 8, 20], dtype=np.int64)):
        selector = _build(factory, options, name)
        count = n - len(earlier)
        rnd = int(len(earlier) > 0)
        ctx = make_context(selector, feats, labels, selected=earlier, seed=6, round=rnd, rounds=2, name=name)
        picked = _select(selector, name, "budget = remaining pool", ctx, count)
        missing = np.setdiff1d(np.setdiff1d(np.arange(n), earlier), picked)
        if len(missing):  # implied by the engine's validation; kept as a plain statement of the check
            raise AssertionError(
                f"selector '{name}' failed check 'budget = remaining pool': did not return {missing.tolist()}"
            )


CHECKS = (
    check_capabilities,
    check_round_zero,
    check_count_and_range,
    check_deterministic,
    check_respects_earlier,
    check_single_class,
    check_whole_pool,
    check_seed_used,
)


def check_selector(factory: Factory, *, options: Mapping[str, Any] | None = None, name: str | None = None) -> None:
    """Run every conformance check on the selector built by `factory(**options)`.

    `name` is used in messages (default: the factory's name). Raises AssertionError on the
    first failed check.
    """
    name = selector_name(factory, name)
    for check in CHECKS:
        check(factory, options=options, name=name)

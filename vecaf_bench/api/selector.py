"""The selector contract: what a selector declares, what it reads, what it returns.

A selector sees a read-only `SelectionContext`, built by the engine in one place
(`vecaf_bench.run.selection_round.build_context`) and by the conformance kit through that same
function. What it may read beyond the pool features is declared once, in its `Capabilities`:
the engine withholds the rest, and the leaderboard prints the declaration beside the numbers,
so that a reader knows which information each method used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Union, runtime_checkable

import numpy as np

from ..errors import PluginError

if TYPE_CHECKING:  # torch is imported when a context is used, not when the API is imported
    import torch

#: What a selector may read beyond the pool features.
#: ``labels``: the whole pool's labels (as VeCAF assumes); ``model``: the current model's logits,
#: probabilities and embeddings on pool images (label-free); ``text``: annotation embeddings.
USES: frozenset[str] = frozenset({"labels", "model", "text"})

#: What `SelectionContext.pool_outputs` can compute.
OUTPUTS: frozenset[str] = frozenset({"logits", "probs", "embeddings"})


class UndeclaredUse(PluginError):
    """A selector read something its capabilities do not declare."""


@dataclass(frozen=True)
class Capabilities:
    """Everything the engine, the suite and the leaderboard need to know about a selector.

    uses: a subset of `USES`. The context refuses any undeclared read.
    whole_pool: the selector trains on the whole pool (the label budget becomes the pool size):
        the `full` reference.
    reselects: in rounds, each round picks the whole cumulative budget afresh (earlier picks are
        not kept) instead of growing the selected set.
    randomized: different seeds may give different picks. The conformance kit checks that a
        randomized selector does read its seed; a deterministic one (k-center from a fixed
        start, say) sets False.
    cold_start: the selector that picks round 0, while the model's head is still untrained
        (`ctx.trained_steps == 0`); None: this selector picks round 0 too. Model-based
        selectors usually name a label-free one (``"random"``, ``"kmeans"``). The run config's
        `cold_start` key overrides it.
    """

    uses: frozenset[str] = frozenset()
    whole_pool: bool = False
    reselects: bool = False
    randomized: bool = True
    cold_start: str | None = None

    def __init__(
        self,
        uses: Collection[str] = (),
        whole_pool: bool = False,
        reselects: bool = False,
        randomized: bool = True,
        cold_start: str | None = None,
    ) -> None:
        if isinstance(uses, str):
            uses = (uses,)
        object.__setattr__(self, "uses", frozenset(uses))
        object.__setattr__(self, "whole_pool", bool(whole_pool))
        object.__setattr__(self, "reselects", bool(reselects))
        object.__setattr__(self, "randomized", bool(randomized))
        object.__setattr__(self, "cold_start", cold_start)


@dataclass(frozen=True)
class Selection:
    """What `select` may return instead of bare indices: the picks in pick order, optional
    per-pick scores (higher: picked earlier or more wanted) and the round's own statistics
    (recorded under ``rounds[r].stats`` in summary.json)."""

    indices: Sequence[int] | np.ndarray
    scores: Sequence[float] | np.ndarray | None = None
    stats: Mapping[str, Any] = field(default_factory=dict)


#: What `Selector.select` returns: indices (list, numpy or torch) or a `Selection`.
Picks = Union[Sequence[int], np.ndarray, "torch.Tensor", Selection]


@dataclass(frozen=True)
class PoolOutputs:
    """The current model's outputs on pool images (eval transform, no augmentation).

    indices: (n,) the pool indices the rows belong to, in the order asked for.
    logits, probs: (n, C) float32, or None when not asked for.
    embeddings: (n, D) float32 penultimate (pre-logit) embeddings of the *current* model; the
        cached `ctx.features` are the pretrained backbone's and do not change between rounds.
    mc_probs: (T, n, C) float32 softmax probabilities under T Monte-Carlo dropout draws
        (dropout on the embeddings before the classifier, seeded by run seed and round);
        None unless `mc_dropout` > 0.
    trained_steps: optimizer steps the model had (0: a randomly initialised head).
    """

    indices: np.ndarray
    logits: np.ndarray | None = None
    probs: np.ndarray | None = None
    embeddings: np.ndarray | None = None
    mc_probs: np.ndarray | None = None
    trained_steps: int = 0


#: The engine's function behind `pool_outputs`: (indices, what, mc_dropout, dropout) ->
#: ({name: array}, forward batches spent).
OutputsProvider = Callable[[np.ndarray, frozenset[str], int, float], tuple[dict[str, np.ndarray], int]]


class _Meter:
    """The mutable part behind a frozen context: forward batches spent and the round's cache."""

    def __init__(self) -> None:
        self.forward_batches = 0
        self.forward_images = 0
        self.cache: dict[tuple[Any, ...], np.ndarray] = {}


@dataclass(frozen=True)
class SelectionContext:
    """What a selector sees in one round. Read-only: built by the engine, never mutated.

    features: (N, d) float32 pretrained pool features, read-only (often memory-mapped).
    selected: int64 pool indices picked in earlier rounds (empty in round 0).
    seed, round, rounds: the run seed, this round (0-based) and the number of rounds.
    num_classes: classes of the run's label space.
    device: where selection runs (the GPU when there is one).
    trained_steps: optimizer steps the model has had; 0 in round 0, where the head is a random
        initialisation: model outputs are the pretrained embeddings and meaningless logits.
    selector: the selector's registered name (used in messages).
    uses: the selector's declared `Capabilities.uses`; anything else is refused.
    """

    features: np.ndarray
    selected: np.ndarray
    seed: int
    round: int = 0
    rounds: int = 1
    num_classes: int = 0
    device: Any = "cpu"
    trained_steps: int = 0
    selector: str = "selector"
    uses: frozenset[str] = frozenset()
    _labels: np.ndarray | None = field(default=None, repr=False)
    _text: Any = field(default=None, repr=False)
    _outputs: OutputsProvider | None = field(default=None, repr=False)
    _model: Any = field(default=None, repr=False)
    _report: Callable[[int, int], None] | None = field(default=None, repr=False)
    _meter: _Meter = field(default_factory=_Meter, repr=False, compare=False)

    # -- what every selector gets ---------------------------------------------------------------
    @property
    def pool_size(self) -> int:
        return int(self.features.shape[0])

    @property
    def forward_batches(self) -> int:
        """Forward batches spent on model outputs in this round (counted into selection compute)."""
        return self._meter.forward_batches

    @property
    def forward_images(self) -> int:
        """Pool images those forward batches held: the selection's compute as images processed."""
        return self._meter.forward_images

    def unselected(self) -> np.ndarray:
        """The pool indices not picked in earlier rounds, ascending: the candidates of this round."""
        return np.setdiff1d(np.arange(self.pool_size, dtype=np.int64), self.selected)

    def rng(self) -> np.random.Generator:
        """A numpy generator seeded from (seed, round): reproducible per run and round.

        Each call returns a *fresh* generator with the same seed: call it once per select() and
        draw everything from that one, or two draws will repeat each other."""
        return np.random.default_rng([int(self.seed), int(self.round)])

    def generator(self, device: Any = None) -> torch.Generator:
        """A torch generator seeded from (seed, round); fresh on each call, as `rng()`."""
        import torch

        g = torch.Generator(device=device or "cpu")
        g.manual_seed(int(self.seed) * 1_000_003 + int(self.round))
        return g

    def features_tensor(self, dtype: Any = None, normalized: bool = True) -> torch.Tensor:
        """The pool features on the selection device; L2-normalised unless told otherwise."""
        import torch

        f = torch.from_numpy(np.array(self.features, dtype=np.float32)).to(self.device, dtype or torch.float32)
        return torch.nn.functional.normalize(f, dim=1) if normalized else f

    def report(self, done: int, total: int) -> None:
        """Progress of a long selection (the engine shows a bar)."""
        if self._report is not None:
            self._report(done, total)

    # -- what a selector must declare -----------------------------------------------------------
    def _require(self, use: str, what: str) -> None:
        if use not in self.uses:
            have = ", ".join(sorted(self.uses)) or "nothing"
            want = sorted(self.uses | {use})
            raise UndeclaredUse(
                f"selector '{self.selector}' read {what}, which needs '{use}', but its capabilities declare "
                f"{have}. Declare it: capabilities = Capabilities(uses={set(want)!r}) "
                f"(the leaderboard then shows 'uses: {', '.join(want)}')."
            )

    @property
    def labels(self) -> np.ndarray:
        """(N,) int64 labels of the whole pool. Needs ``labels``."""
        self._require("labels", "ctx.labels")
        assert self._labels is not None
        return self._labels

    @property
    def text(self) -> Any:
        """Annotation embeddings (`vecaf_bench.api.TextFeatures`: per_sample, per_class,
        shared_space, source). Needs ``text``."""
        self._require("text", "ctx.text")
        return self._text

    def pool_outputs(
        self,
        indices: Sequence[int] | np.ndarray | None = None,
        what: Collection[str] = ("logits", "probs", "embeddings"),
        mc_dropout: int = 0,
        dropout: float = 0.5,
    ) -> PoolOutputs:
        """The current model's outputs on pool images (all of the pool by default).

        Computed batched on the selection device and cached for the round: asking twice costs
        nothing. The forward batches are counted into the run's selection compute. Label-free.
        Needs ``model``. In round 0 (`trained_steps == 0`) the head is untrained.
        """
        self._require("model", "ctx.pool_outputs()")
        if self._outputs is None:
            raise PluginError(f"selector '{self.selector}': this context has no model to compute outputs with.")
        want = frozenset([what] if isinstance(what, str) else what)
        bad = sorted(want - OUTPUTS)
        if bad:
            raise PluginError(
                f"selector '{self.selector}' asked pool_outputs for {bad}; it gives {sorted(OUTPUTS)}."
            )
        if int(mc_dropout) < 0 or not 0.0 <= float(dropout) < 1.0:
            raise PluginError(
                f"selector '{self.selector}': pool_outputs needs mc_dropout >= 0 and 0 <= dropout < 1, "
                f"got {mc_dropout} and {dropout}."
            )
        idx = (
            np.arange(self.pool_size, dtype=np.int64)
            if indices is None
            else np.asarray(indices, dtype=np.int64).reshape(-1)
        )
        if len(idx) and (idx.min() < 0 or idx.max() >= self.pool_size):
            raise PluginError(
                f"selector '{self.selector}' asked pool_outputs for indices outside the pool [0, {self.pool_size})."
            )
        need = set(want)
        if "probs" in need:
            need.add("logits")
        if mc_dropout:
            need.add("mc_probs")
        got = self._cached(idx, frozenset(need), int(mc_dropout), float(dropout))
        return PoolOutputs(
            indices=idx,
            logits=got.get("logits") if "logits" in want else None,
            probs=got.get("probs") if "probs" in want else None,
            embeddings=got.get("embeddings") if "embeddings" in want else None,
            mc_probs=got.get("mc_probs") if mc_dropout else None,
            trained_steps=self.trained_steps,
        )

    def _cached(self, idx: np.ndarray, need: frozenset[str], mc: int, p: float) -> dict[str, np.ndarray]:
        """Each output is cached per (indices, name); a subset is sliced from a whole-pool result."""
        assert self._outputs is not None
        cache = self._meter.cache
        whole = len(idx) == self.pool_size and bool((idx == np.arange(self.pool_size)).all())
        digest = "all" if whole else hashlib.sha1(idx.tobytes()).hexdigest()

        def key(where: str, name: str) -> tuple[Any, ...]:
            return (where, name, (mc, p) if name == "mc_probs" else None)

        out: dict[str, np.ndarray] = {}
        for name in need:
            if key(digest, name) in cache:
                out[name] = cache[key(digest, name)]
            elif key("all", name) in cache:
                a = cache[key("all", name)]
                out[name] = a[:, idx] if name == "mc_probs" else a[idx]
                out[name].setflags(write=False)
        missing = set(need) - set(out)
        if missing:
            if "probs" in missing:
                missing.add("logits")
            computed, batches = self._outputs(idx, frozenset(missing - {"probs"}), mc, p)
            self._meter.forward_batches += int(batches)
            self._meter.forward_images += int(len(idx)) if batches else 0  # 0 batches: read off cached features
            if "logits" in computed:
                computed["probs"] = _softmax(computed["logits"])
            for name, a in computed.items():
                a.setflags(write=False)
                cache[key(digest, name)] = a
                out.setdefault(name, a)
        return out

    def per_sample_loss(self, indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Cross-entropy of the current model against the *true pool labels* (VeCAF's objective
        weights). Reads labels and the model: needs both ``labels`` and ``model``."""
        self._require("labels", "ctx.per_sample_loss() (it reads the pool's true labels)")
        self._require("model", "ctx.per_sample_loss()")
        import torch

        out = self.pool_outputs(indices, what=("logits",))
        assert out.logits is not None and self._labels is not None
        logits = torch.from_numpy(np.array(out.logits, dtype=np.float32))
        target = torch.from_numpy(np.asarray(self._labels[out.indices], dtype=np.int64))
        return torch.nn.functional.cross_entropy(logits, target, reduction="none").numpy()

    @property
    def model(self) -> Any:
        """Deprecated since API 1.0: the raw torch module takes normalised images, which a
        selector never gets. Use `ctx.pool_outputs()`."""
        self._require("model", "ctx.model")
        from .deprecations import warn_once

        warn_once(
            f"ctx.model:{self.selector}",
            f"selector '{self.selector}' reads ctx.model, deprecated in vecaf-bench API 1.0: the model takes "
            "normalised images, which selectors never get. Call ctx.pool_outputs(what=('logits', 'embeddings')).",
        )
        return self._model


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z -= z.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z.astype(np.float32)


@runtime_checkable
class Selector(Protocol):
    """A selection method. Options are the factory's keyword arguments
    (`--set selector_options.<name>=<value>`)."""

    capabilities: Capabilities

    def select(self, ctx: SelectionContext, count: int) -> Picks:
        """`count` new pool indices, none of them in `ctx.selected`, in pick order."""
        ...


#: A selector factory: a class or function taking the selector's options as keyword arguments.
SelectorFactory = Callable[..., Selector]


def capabilities_of(selector: Any, name: str = "") -> Capabilities:
    """The selector's `Capabilities`. A selector written before API 1.0 declared `uses`,
    `takes_whole_pool` and `reselects` as loose attributes: those still work, with a warning
    that says what to write instead. Unknown uses are a `PluginError`."""
    name = name or type(selector).__name__
    caps = getattr(selector, "capabilities", None)
    if caps is None:
        from .deprecations import warn_once

        uses: Any = getattr(selector, "uses", frozenset())
        whole = bool(getattr(selector, "takes_whole_pool", False))
        reselects = bool(getattr(selector, "reselects", False))
        args = [f"uses={set(uses)!r}" if uses else ""]
        args += ["whole_pool=True" if whole else "", "reselects=True" if reselects else ""]
        warn_once(
            f"capabilities:{type(selector).__qualname__}",
            f"selector '{name}' declares `uses`/`takes_whole_pool`/`reselects` attributes, deprecated since "
            "vecaf-bench API 1.0. Declare them in one place: "
            f"capabilities = Capabilities({', '.join(a for a in args if a)}) "
            "(from vecaf_bench.api import Capabilities).",
        )
        if isinstance(uses, str):
            raise PluginError(f"selector '{name}' declares uses={uses!r}: it must be a set, e.g. {{'labels'}}.")
        caps = Capabilities(uses=frozenset(uses), whole_pool=whole, reselects=reselects)
    if not isinstance(caps, Capabilities):
        raise PluginError(
            f"selector '{name}' has capabilities of type {type(caps).__name__}; it must be a "
            "vecaf_bench.api.Capabilities."
        )
    unknown = sorted(caps.uses - USES)
    if unknown:
        raise PluginError(f"selector '{name}' declares unknown uses {unknown}; known: {sorted(USES)}.")
    return caps

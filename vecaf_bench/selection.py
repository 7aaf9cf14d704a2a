"""The selector contract and the runner's check of what a selector returns.

A selector sees a `SelectionContext`, never the test split and never the training loop. What
it may read is declared in `uses` (labels, model, text), so that the leaderboard can say which
information each method used and the runner can withhold the rest.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from .errors import PluginError

KNOWN_USES = frozenset({"labels", "model", "text"})


class Selector(Protocol):
    # what the selector reads beyond the pool features: a subset of KNOWN_USES
    uses: frozenset[str]

    def select(self, ctx: SelectionContext, count: int) -> Sequence[int]:
        """`count` new pool indices, none of them in `ctx.selected`."""
        ...


@dataclass
class SelectionContext:
    features: np.ndarray  # (N, d) float32 pool features, possibly memory-mapped
    selected: np.ndarray  # indices picked in earlier rounds (int64)
    seed: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    round: int = 0
    rounds: int = 1
    num_classes: int = 0
    labels: np.ndarray | None = None  # only for selectors with "labels" in `uses`
    model: torch.nn.Module | None = None  # only for selectors with "model" in `uses`
    # per-sample cross-entropy of `model` on pool indices (None: all); its forward passes are
    # counted into `forward_batches` by the runner
    per_sample_loss: Callable[[np.ndarray | None], np.ndarray] | None = None
    trained_steps: int = 0  # optimizer steps the model has had (0: its head is untrained)
    text: Any = None  # text features (per sample, per class) for selectors with "text" in `uses`
    forward_batches: int = 0  # selection forward passes, counted into the summary
    # progress callback (done, total): long selectors call it, the runner shows a bar
    report: Callable[[int, int], None] = field(default=lambda done, total: None)

    @property
    def pool_size(self) -> int:
        return int(self.features.shape[0])

    def generator(self, device: torch.device | None = None) -> torch.Generator:
        """A torch generator seeded from (seed, round): reproducible per run and per round."""
        g = torch.Generator(device=device or "cpu")
        g.manual_seed(int(self.seed) * 1_000_003 + int(self.round))
        return g

    def rng(self) -> np.random.Generator:
        return np.random.default_rng([int(self.seed), int(self.round)])

    def features_tensor(self, dtype: torch.dtype = torch.float32, normalized: bool = True) -> torch.Tensor:
        """The pool features on the selection device; L2-normalised unless told otherwise."""
        f = torch.from_numpy(np.array(self.features, dtype=np.float32)).to(self.device, dtype)
        return torch.nn.functional.normalize(f, dim=1) if normalized else f


def validate_selection(plugin: str, picked: Any, count: int, pool_size: int, earlier: np.ndarray) -> np.ndarray:
    """The indices as int64, or a PluginError that names the plugin and what it got wrong."""
    try:
        if isinstance(picked, torch.Tensor):  # before np.asarray, which fails on a CUDA tensor
            arr = picked.detach().cpu().numpy()
        else:
            arr = np.asarray(picked if isinstance(picked, np.ndarray) else list(picked))
    except Exception as e:
        raise PluginError(
            f"selector '{plugin}' returned {type(picked).__name__}, not a list of indices ({e})."
        ) from None
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise PluginError(
            f"selector '{plugin}' must return a 1-d sequence of integer pool indices, got shape {arr.shape} "
            f"of {arr.dtype}. Fix the plugin's select()."
        )
    arr = arr.astype(np.int64)
    problems = []
    if len(arr) != count:
        problems.append(f"returned {len(arr)} indices where {count} were asked for")
    bad = arr[(arr < 0) | (arr >= pool_size)]
    if len(bad):
        problems.append(f"returned indices outside the pool [0, {pool_size}): {sorted(set(bad.tolist()))[:5]}")
    uniq, counts = np.unique(arr, return_counts=True)
    if (counts > 1).any():
        problems.append(f"returned duplicates: {uniq[counts > 1][:5].tolist()}")
    again = np.intersect1d(arr, earlier)
    if len(again):
        problems.append(f"picked {len(again)} indices already selected in earlier rounds: {again[:5].tolist()}")
    if problems:
        raise PluginError(
            f"selector '{plugin}' broke the selector contract: {'; '.join(problems)}. "
            "The run was stopped before training; fix the plugin's select()."
        )
    return arr


@dataclass
class RoundResult:
    indices: np.ndarray
    seconds: float
    forward_batches: int


def run_selector(name: str, selector: Selector, ctx: SelectionContext, count: int) -> RoundResult:
    start = time.perf_counter()
    picked = selector.select(ctx, count)
    seconds = time.perf_counter() - start
    arr = validate_selection(name, picked, count, ctx.pool_size, ctx.selected)
    return RoundResult(arr, seconds, ctx.forward_batches)

"""A round's context whose model outputs come from fixed arrays, for the model-based selectors'
tests: the engine's own `build_context`, with an outputs provider that serves the given logits,
embeddings and MC-dropout probabilities for the indices asked, and records what was asked."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vecaf_bench.api import Capabilities, SelectionContext, capabilities_of
from vecaf_bench.run.selection_round import build_context


class FixedOutputs:
    """An engine stand-in: `arrays` (logits (N, C), embeddings (N, D), mc_probs (T, N, C)) served
    for the asked indices; each call is recorded in `asked` as (indices, outputs, T, dropout)."""

    def __init__(self, **arrays: np.ndarray) -> None:
        self.arrays = {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()}
        self.asked: list[tuple[list[int], frozenset[str], int, float]] = []

    def __call__(self, idx: np.ndarray, what: frozenset[str], mc: int, p: float):
        self.asked.append((idx.tolist(), frozenset(what), mc, p))
        out = {k: self.arrays[k][idx].copy() for k in what if k != "mc_probs"}
        if mc:
            assert mc == len(self.arrays["mc_probs"]), "ask for as many draws as the test holds"
            out["mc_probs"] = self.arrays["mc_probs"][:, idx].copy()
        return out, 1 + len(idx) // 16


def context(
    selector: Any,
    *,
    name: str = "selector",
    selected: Sequence[int] | np.ndarray = (),
    seed: int = 0,
    round: int = 1,
    uses: Sequence[str] | None = None,
    report: Any = None,
    **arrays: np.ndarray,
) -> tuple[SelectionContext, FixedOutputs]:
    """(context, provider) for `selector` (an instance or class) over the pool the arrays describe;
    `uses` overrides its declared uses (to check that an undeclared read is refused)."""
    caps = capabilities_of(selector)
    if uses is not None:
        caps = Capabilities(uses=uses, cold_start=caps.cold_start, randomized=caps.randomized)
    provider = FixedOutputs(**arrays)
    n = arrays["mc_probs"].shape[1] if "mc_probs" in arrays else next(iter(arrays.values())).shape[0]
    c = next((a.shape[-1] for k, a in arrays.items() if k in ("logits", "mc_probs")), 1)
    ctx = build_context(
        selector=name,
        capabilities=caps,
        features=np.random.default_rng(99).normal(size=(n, 4)).astype(np.float32),
        selected=np.asarray(selected, dtype=np.int64),
        seed=seed,
        round=round,
        rounds=3,
        num_classes=c,
        trained_steps=5 if round else 0,
        outputs=provider,
        report=report,
    )
    return ctx, provider

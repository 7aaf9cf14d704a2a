"""entropy: maximum predictive entropy (uncertainty sampling).

Paper: the classic uncertainty-sampling baseline (Lewis & Gale, SIGIR 1994; "max-entropy" in
Settles, Active Learning Literature Survey, 2009); the entropy baseline of BADGE (Ash et al.,
ICLR 2020) and of most deep active-learning benchmarks.

Reads: ``model`` only (label-free): ``ctx.pool_outputs(what=("probs",))`` on the unselected
pool, i.e. the current model's softmax probabilities p_i (eval transform). Round 0 (an untrained
head) is picked by the cold-start selector, ``random``; run in round 0 anyway, it ranks the
random head's outputs.

Picks: the `count` unselected samples of highest H(p_i) = -sum_c p_ic log p_ic (in float64),
in decreasing entropy; ties go to the lower pool index. Returns a `Selection` whose scores are
the picks' entropies and whose stats are ``entropy_picked`` (mean over the picks),
``entropy_pool`` (mean over the scored samples), ``entropy_max`` (log C) and ``scored``.

Options:
    candidates: int | None = None -- score only a random subset of the unselected pool of this
        size (seeded by ``ctx.rng()``; at least `count`), for pools where a forward pass over
        all of it costs too much. None: score the whole unselected pool (deterministic).

Cost: one forward pass over the scored samples (N - |selected|, or `candidates`), counted
into the run's selection compute by the engine; then O(N C) for the entropies and
O(N log N) for the sort. Memory O(N C).

Deviations from public code: none in the score. Ties are broken to the lower index (public
implementations leave it to their sort); `candidates` is the usual "random subset" trick of
large-pool benchmarks, not part of the method.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from vecaf_bench.api import Capabilities, Selection, SelectionContext, UserError, hookimpl


def entropy(probs: np.ndarray) -> np.ndarray:
    """H(p) = -sum p log p per row, in float64 (0 log 0 = 0)."""
    p = np.asarray(probs, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(p), 0.0)
    return -plogp.sum(axis=1)


class Entropy:
    capabilities = Capabilities(uses={"model"}, cold_start="random", randomized=False)

    def __init__(self, candidates: int | None = None) -> None:
        if candidates is not None and int(candidates) < 1:
            raise UserError(f"entropy candidates must be a positive sample count or None, got {candidates}.")
        self.candidates = None if candidates is None else int(candidates)
        if self.candidates is not None:  # a seeded random subset: different seeds, different picks
            self.capabilities = Capabilities(uses={"model"}, cold_start="random", randomized=True)

    def select(self, ctx: SelectionContext, count: int) -> Selection:
        free = np.setdiff1d(np.arange(ctx.pool_size), np.asarray(ctx.selected)).astype(np.int64)
        count = min(int(count), len(free))
        if count <= 0:
            return Selection(np.zeros(0, dtype=np.int64), scores=np.zeros(0), stats={"scored": 0})
        if self.candidates is not None and max(self.candidates, count) < len(free):
            free = np.sort(ctx.rng().choice(free, size=max(self.candidates, count), replace=False))
        out = ctx.pool_outputs(indices=free, what=("probs",))
        assert out.probs is not None
        h = entropy(out.probs)
        order = np.argsort(-h, kind="stable")[:count]  # stable on ascending `free`: ties to the lower index
        picked = h[order]
        stats = {
            "entropy_picked": float(picked.mean()),
            "entropy_pool": float(h.mean()),
            "entropy_max": float(np.log(max(out.probs.shape[1], 1))),
            "scored": int(len(free)),
        }
        return Selection(free[order], scores=picked, stats=stats)


@hookimpl
def vecaf_bench_add_selectors() -> Mapping[str, Any]:
    return {"entropy": Entropy}

"""What entropy, margin, least-confidence and bald share: the top `count` of the unselected pool
by an uncertainty score of one of the current model's outputs. Not a plugin (no hook): a base.

A selector names, in its class line, its registered name (for messages), its score function (one
float64 uncertainty per row of the output, higher = picked earlier) and the output it reads,
``"probs"`` (n, C) or ``"mc_probs"`` (T, n, C, then ``self.mc_dropout`` draws at ``self.dropout``):

    class Entropy(TopUncertainty, name="entropy", score=entropy): ...

The picks are the highest scores in decreasing order, ties to the lower pool index (a stable sort
over the ascending unselected indices).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from vecaf_bench.api import Capabilities, Selection, SelectionContext, UserError


class TopUncertainty:
    name: ClassVar[str]
    reads: ClassVar[str]
    score: ClassVar[Callable[[np.ndarray], np.ndarray]]
    capabilities = Capabilities(uses={"model"}, cold_start="random", randomized=False)

    def __init_subclass__(cls, *, name: str, score: Callable[[np.ndarray], np.ndarray], reads: str = "probs",
                          **kw: Any) -> None:  # fmt: skip
        super().__init_subclass__(**kw)
        cls.name, cls.reads, cls.score = name, reads, staticmethod(score)

    def __init__(self, candidates: int | None = None) -> None:
        if candidates is not None and int(candidates) < 1:
            raise UserError(
                f"{self.name} candidates must be a positive sample count or None (the whole unselected "
                f"pool), got {candidates}."
            )
        self.candidates = None if candidates is None else int(candidates)
        self.mc_dropout, self.dropout = 0, 0.5
        if self.candidates is not None:  # a seeded random subset: different seeds, different picks
            self.capabilities = dataclasses.replace(self.capabilities, randomized=True)

    def select(self, ctx: SelectionContext, count: int) -> Selection:
        free = ctx.unselected()
        count = min(int(count), len(free))
        if count <= 0:
            return Selection(np.zeros(0, dtype=np.int64), scores=np.zeros(0), stats={"scored": 0})
        if self.candidates is not None and max(self.candidates, count) < len(free):
            free = np.sort(ctx.rng().choice(free, size=max(self.candidates, count), replace=False))
        what = () if self.reads == "mc_probs" else (self.reads,)  # mc_probs: asked for by mc_dropout
        out = ctx.pool_outputs(free, what=what, mc_dropout=self.mc_dropout, dropout=self.dropout)
        s = np.asarray(type(self).score(getattr(out, self.reads)), dtype=np.float64)
        order = np.argsort(-s, kind="stable")[:count]  # stable on ascending `free`: ties to the lower index
        stats = {
            "uncertainty_picked": float(s[order].mean()),
            "uncertainty_pool": float(s.mean()),
            "scored": int(len(free)),
        }
        return Selection(free[order], scores=s[order], stats=stats)


def entropy(probs: np.ndarray) -> np.ndarray:
    """H(p) = -sum_c p_c log p_c over the last axis, in float64 (0 log 0 = 0)."""
    p = np.asarray(probs, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum(axis=-1)

"""variation-ratios: the samples whose Monte-Carlo dropout predictions disagree the most.

Paper: L. C. Freeman, "Elementary Applied Statistics", Wiley 1965 (the variation ratio, a
dispersion measure for categorical data); used as an acquisition function by Y. Gal, R. Islam,
Z. Ghahramani, "Deep Bayesian Active Learning with Image Data", ICML 2017.

Reads: ``model`` only (label-free): ``ctx.pool_outputs(mc_dropout=T, dropout=p)`` on the
unselected pool, the (T, n, C) softmax probabilities under T Monte-Carlo dropout draws (the
engine drops units of the embedding before the classifier, seeded by run seed and round).
Capabilities: ``uses={"model"}, cold_start="random"``: round 0, whose head is untrained, is
picked by ``random``; variation-ratios picks rounds 1 and later. Randomized: the dropout masks
depend on the seed.

Picks: each draw t votes for its predicted class argmax_c p_tc; with m_i the number of votes of
sample i's most voted class, the variation ratio is v_i = 1 - m_i / T (0: every draw agrees; at
most 1 - 1/min(T, C)). The `count` unselected samples of highest v_i, highest first; ties (v_i
takes only T values, so they are common) go to the lower pool index. Returns a `Selection`:
scores are the picks' v_i, stats ``variation_ratio_picked`` / ``variation_ratio_pool`` (means).

Options:
    mc_samples: int = 20 -- T, dropout draws per sample.
    dropout: float = 0.5 -- p, the drop probability, in (0, 1).

Cost: one forward pass over the N - |selected| unselected samples (counted by the engine), plus
T evaluations of the classifier per batch; O(T N C) time and memory on the host.

Deviations from public code: none in the score; ties broken to the lower index (Gal et al.'s
code scores a random subset of the pool; this scores all of it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from vecaf_bench.api import Capabilities, Selection, SelectionContext, UserError, hookimpl


def variation_ratio(mc_probs: np.ndarray) -> np.ndarray:
    """1 - (votes of the modal class) / T per sample, from (T, n, C) probabilities."""
    t, _, c = mc_probs.shape
    votes = mc_probs.argmax(axis=2)  # (T, n): the class each draw predicts
    per_class = (votes[:, :, None] == np.arange(c)).sum(axis=0)  # (n, C) vote counts
    return 1.0 - per_class.max(axis=1) / t


class VariationRatios:
    # reads the current model (label-free); round 0 is picked by `random`
    capabilities = Capabilities(uses={"model"}, cold_start="random")

    # the options: --set selector_options.mc_samples=50
    def __init__(self, mc_samples: int = 20, dropout: float = 0.5) -> None:
        if int(mc_samples) < 2:
            raise UserError(f"variation-ratios mc_samples must be an integer >= 2, got {mc_samples}.")
        if not 0.0 < float(dropout) < 1.0:
            raise UserError(f"variation-ratios dropout must be in (0, 1), e.g. 0.5, got {dropout}.")
        self.mc_samples, self.dropout = int(mc_samples), float(dropout)

    def select(self, ctx: SelectionContext, count: int) -> Selection:
        free = ctx.unselected()  # ascending pool indices not picked in earlier rounds
        count = min(int(count), len(free))
        if count <= 0:  # a label budget smaller than the number of rounds leaves a round empty
            return Selection(np.zeros(0, dtype=np.int64))
        out = ctx.pool_outputs(indices=free, what=(), mc_dropout=self.mc_samples, dropout=self.dropout)
        assert out.mc_probs is not None
        v = variation_ratio(out.mc_probs)
        order = np.argsort(-v, kind="stable")[:count]  # highest first; ties: the lower index
        stats = {"variation_ratio_picked": float(v[order].mean()), "variation_ratio_pool": float(v.mean())}
        return Selection(free[order], scores=v[order], stats=stats)


@hookimpl
def vecaf_bench_add_selectors() -> Mapping[str, Any]:
    return {"variation-ratios": VariationRatios}

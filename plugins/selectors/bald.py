"""bald: Bayesian Active Learning by Disagreement with Monte-Carlo dropout, built in.

Paper: Y. Gal, R. Islam, Z. Ghahramani, "Deep Bayesian Active Learning with Image Data", ICML
2017 (MC-dropout BALD); the acquisition function is N. Houlsby, F. Huszar, Z. Ghahramani,
M. Lengyel, "Bayesian Active Learning for Classification and Preference Learning", 2011.

Reads: ``model`` only (label-free): ``ctx.pool_outputs(what=(), mc_dropout=T, dropout=p)`` on
the unselected pool, the (T, n, C) softmax probabilities under T Monte-Carlo dropout draws.
What the dropout acts on: the engine runs the backbone once per batch in eval mode and draws T
Bernoulli masks (drop probability p, kept units scaled by 1 / (1 - p)) on the penultimate
embedding before the classifier (last-layer MC dropout, as BALD implementations for pretrained
models use); the backbone's own dropout layers stay off. The masks come from a generator seeded
by (run seed, round): the same round gives the same draws. Capabilities: ``uses={"model"},
cold_start="random", randomized=True`` (the masks depend on the seed): round 0 (an untrained
head) is picked by ``random``, so bald needs ``--rounds 2`` or more.

Picks: the `count` unselected samples of highest mutual information between the prediction and
the weights, I_i = H[mean_t p_it] - mean_t H[p_it] (float64, clamped at 0 against rounding; at
most log C), highest first; ties go to the lower pool index. Scores are the picks' I_i; stats
``uncertainty_picked`` / ``uncertainty_pool`` (mean I over the picks / the scored samples) and
``scored``.

Options:
    mc_samples: int = 20 -- T, dropout draws per sample (Gal et al. use 20 or 100).
    dropout: float = 0.5 -- p, the drop probability on the embedding, in (0, 1).
    candidates: int | None = None -- score only a seeded random subset of this many unselected
        samples (at least `count`). None: the whole unselected pool.

Cost: one backbone forward pass over the scored samples, counted (none under a frozen backbone),
plus T head evaluations per batch; O(T N C) time and memory for the draws, O(N log N) to rank.

Deviations from public code: dropout only before the classifier, not inside the backbone (the
engine's MC dropout; a pretrained backbone is not trained with dropout on every layer), so the
weight posterior is that of the last layer; the pool is scored whole instead of on a random
subset of 10,000 (Gal et al.'s code: set `candidates` for that); ties to the lower index.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from vecaf_bench.api import Capabilities, UserError, hookimpl
from vecaf_bench_plugins.selectors._uncertainty import TopUncertainty, entropy


def mutual_information(mc_probs: np.ndarray) -> np.ndarray:
    """BALD's I = H[mean_t p_t] - mean_t H[p_t] per sample, from (T, n, C) probabilities, float64."""
    p = np.asarray(mc_probs, dtype=np.float64)
    return np.maximum(entropy(p.mean(axis=0)) - entropy(p).mean(axis=0), 0.0)


class Bald(TopUncertainty, name="bald", score=mutual_information, reads="mc_probs"):
    capabilities = Capabilities(uses={"model"}, cold_start="random", randomized=True)

    def __init__(self, mc_samples: int = 20, dropout: float = 0.5, candidates: int | None = None) -> None:
        super().__init__(candidates)
        if int(mc_samples) < 2:
            raise UserError(f"bald mc_samples must be an integer >= 2 (draws per sample), got {mc_samples}.")
        if not 0.0 < float(dropout) < 1.0:
            raise UserError(f"bald dropout must be a drop probability in (0, 1), e.g. 0.5, got {dropout}.")
        self.mc_dropout, self.dropout = int(mc_samples), float(dropout)


@hookimpl
def vecaf_bench_add_selectors() -> Mapping[str, Any]:
    return {"bald": Bald}

"""least-confidence: the least confident predictions first (least-confidence sampling), built in.

Paper: D. D. Lewis, J. Catlett, "Heterogeneous Uncertainty Sampling for Supervised Learning",
ICML 1994 (Settles' survey, 2009: "least confident"); a baseline of most deep active-learning
benchmarks (e.g. BADGE's "Conf").

Reads: ``model`` only (label-free): ``ctx.pool_outputs(what=("probs",))`` on the unselected
pool, the current model's softmax probabilities p_i. Capabilities: ``uses={"model"},
cold_start="random", randomized=False``: round 0 (an untrained head) is picked by ``random``, so
it needs ``--rounds 2`` or more.

Picks: the `count` unselected samples of largest 1 - max_c p_ic (float64; in [0, 1 - 1/C]),
largest first; ties go to the lower pool index. Scores are 1 - max p of the picks; stats
``uncertainty_picked`` / ``uncertainty_pool`` (means over the picks / the scored samples) and
``scored``.

Options:
    candidates: int | None = None -- score only a seeded random subset of this many unselected
        samples (at least `count`); the selector is then randomized. None: the whole unselected pool.

Cost: one forward pass over the scored samples, counted (none under a frozen backbone); O(N C)
for the maxima, O(N log N) for the ranking. Memory O(N C).

Deviations from public code: none in the score; ties broken to the lower index.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from vecaf_bench.api import hookimpl
from vecaf_bench_plugins.selectors._uncertainty import TopUncertainty


def least_confidence(probs: np.ndarray) -> np.ndarray:
    """1 - max_c p_c per row, in float64."""
    return 1.0 - np.asarray(probs, dtype=np.float64).max(axis=1)


class LeastConfidence(TopUncertainty, name="least-confidence", score=least_confidence):
    """Least confident first; options (`candidates`) and picking are TopUncertainty's."""


@hookimpl
def vecaf_bench_add_selectors() -> Mapping[str, Any]:
    return {"least-confidence": LeastConfidence}

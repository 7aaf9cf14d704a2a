"""margin: smallest margin between the two most probable classes (margin sampling), built in.

Paper: T. Scheffer, C. Decomain, S. Wrobel, "Active Hidden Markov Models for Information
Extraction", IDA 2001 ("margin" in Settles' survey, 2009); a baseline of BADGE (Ash et al., ICLR
2020) and of most deep active-learning benchmarks.

Reads: ``model`` only (label-free): ``ctx.pool_outputs(what=("probs",))`` on the unselected
pool, the current model's softmax probabilities p_i. Capabilities: ``uses={"model"},
cold_start="random", randomized=False``: round 0 (an untrained head) is picked by ``random``, so
margin needs ``--rounds 2`` or more.

Picks: the `count` unselected samples of smallest p_i(1) - p_i(2), the top two probabilities
(float64; with one class p_i(2) = 0, margin 1), smallest first; ties go to the lower pool index.
Scores are the uncertainty 1 - (p_i(1) - p_i(2)) in [0, 1] (higher = picked earlier); stats
``uncertainty_picked`` and ``uncertainty_pool`` are its means over the picks and the scored
samples, ``scored`` their number.

Options:
    candidates: int | None = None -- score only a seeded random subset of this many unselected
        samples (at least `count`); the selector is then randomized. None: the whole unselected pool.

Cost: one forward pass over the scored samples, counted (none under a frozen backbone); then
O(N C) for the top two (a partition, not a sort) and O(N log N) for the ranking. Memory O(N C).

Deviations from public code: none in the score; ties broken to the lower index.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from vecaf_bench.api import hookimpl
from vecaf_bench_plugins.selectors._uncertainty import TopUncertainty


def margin_uncertainty(probs: np.ndarray) -> np.ndarray:
    """1 - (p(1) - p(2)) per row, in float64; with one class, p(2) = 0."""
    p = np.asarray(probs, dtype=np.float64)
    if p.shape[1] < 2:
        return 1.0 - p[:, 0]
    top2 = np.partition(p, p.shape[1] - 2, axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


class Margin(TopUncertainty, name="margin", score=margin_uncertainty):
    """Smallest top-two margin first; options (`candidates`) and picking are TopUncertainty's."""


@hookimpl
def vecaf_bench_add_selectors() -> Mapping[str, Any]:
    return {"margin": Margin}

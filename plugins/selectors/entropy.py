"""entropy: maximum predictive entropy (uncertainty sampling), built in.

Paper: the classic uncertainty-sampling baseline (Lewis & Gale, SIGIR 1994; "max-entropy" in
Settles, Active Learning Literature Survey, 2009); the entropy baseline of BADGE (Ash et al.,
ICLR 2020) and of most deep active-learning benchmarks.

Reads: ``model`` only (label-free): ``ctx.pool_outputs(what=("probs",))`` on the unselected
pool, i.e. the current model's softmax probabilities p_i (eval transform). Capabilities:
``uses={"model"}, cold_start="random", randomized=False``: round 0 (an untrained head) is picked
by the cold-start selector, ``random``, so entropy needs ``--rounds 2`` or more; run in round 0
anyway (``--set cold_start=self``), it ranks the random head's outputs.

Picks: the `count` unselected samples of highest H(p_i) = -sum_c p_ic log p_ic (float64,
0 log 0 = 0; at most log C), in decreasing entropy; ties go to the lower pool index. Returns a
`Selection` whose scores are the picks' entropies and whose stats are ``uncertainty_picked``
(mean over the picks), ``uncertainty_pool`` (mean over the scored samples) and ``scored``.

Options:
    candidates: int | None = None -- score only a random subset of the unselected pool of this
        size (seeded by ``ctx.rng()``; at least `count`), for pools where a forward pass over
        all of it costs too much; the selector is then randomized. None: the whole unselected
        pool (deterministic given the model).

Cost: one forward pass over the scored samples (N - |selected|, or `candidates`), counted
into the run's selection compute by the engine (none under a frozen backbone: the head is applied
to the cached features); then O(N C) for the entropies and O(N log N) for the sort, on the host.
Memory O(N C).

Deviations from public code: none in the score. Ties are broken to the lower index (public
implementations leave it to their sort); `candidates` is the usual "random subset" trick of
large-pool benchmarks, not part of the method.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vecaf_bench.api import hookimpl
from vecaf_bench_plugins.selectors._uncertainty import TopUncertainty, entropy


class Entropy(TopUncertainty, name="entropy", score=entropy):
    """Max entropy of the softmax; options (`candidates`) and picking are TopUncertainty's."""


@hookimpl
def vecaf_bench_add_selectors() -> Mapping[str, Any]:
    return {"entropy": Entropy}

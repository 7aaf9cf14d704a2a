"""coreset-model: greedy k-center on the current model's embeddings (Sener & Savarese), built in.

Paper: O. Sener, S. Savarese, "Active Learning for Convolutional Neural Networks: A Core-Set
Approach", ICLR 2018 (k-center greedy, their Algorithm 1), in its active-learning setting: the
distances are between the embeddings of the model being trained, recomputed every round. The
built-in ``coreset`` runs the same algorithm on the fixed pretrained features (ActiveFT's "FDS").

Reads: ``model`` only (label-free): ``ctx.pool_outputs(what=("embeddings",))`` on the whole pool,
the current model's penultimate embeddings e_i (D), earlier picks included: they are the initial
centres. Capabilities: ``uses={"model"}, cold_start="random"`` (randomized: with no earlier picks
the first centre is drawn from the seed): round 0 (an untrained head) is picked by ``random``, so
coreset-model needs ``--rounds 2`` or more and starts from those picks.

Picks: the centres start as ``ctx.selected`` (when empty, as in round 0 run with
``--set cold_start=self``: one sample drawn with ``ctx.generator()``, which counts toward the
batch); each pick is the unselected sample farthest (Euclidean) from its nearest centre, which
then becomes a centre; ties to the lower index. The greedy loop is ``coreset``'s own
(``KCenterGreedy``), run on a context whose features are the embeddings.

Options:
    normalize: bool = True -- L2-normalise the embeddings first (as ``coreset`` does its
        features); False: raw embeddings, as the paper's code.
    chunk: int = 1024 -- centres per block when the distances to the earlier picks are computed.
    precision: "fp32" | "bf16" = "fp32" -- a bf16 copy for the per-pick matvec (``coreset``'s).

Cost: one forward pass over the whole pool (N images, counted; none under a frozen backbone,
where the embeddings are the cached features and coreset-model equals ``coreset`` up to which
centres it starts from), then O(N (S + B) D) time on ``ctx.device``: one matvec per pick and
the distances to the S earlier picks in N x `chunk` blocks; memory O(N D + N chunk).

Deviations from public code: the paper's robust variant (outliers allowed, solved by a MIP) is not
implemented, only its greedy 2-approximation, which their code also uses as the initialisation;
embeddings are L2-normalised by default (option `normalize`); ties to the lower index.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from vecaf_bench.api import Capabilities, SelectionContext, UserError, hookimpl
from vecaf_bench_plugins.selectors.coreset import KCenterGreedy

if TYPE_CHECKING:  # imported where it runs: listing plugins and argument errors need no torch
    import torch


@dataclasses.dataclass(frozen=True)
class _EmbeddingContext(SelectionContext):
    """The round's context with the model's embeddings as its features, normalised or not."""

    normalize: bool = True

    def features_tensor(self, dtype: Any = None, normalized: bool = True) -> torch.Tensor:
        return super().features_tensor(dtype, normalized and self.normalize)


class CoresetModel:
    capabilities = Capabilities(uses={"model"}, cold_start="random")

    def __init__(self, normalize: bool = True, chunk: int = 1024, precision: str = "fp32") -> None:
        if not isinstance(normalize, (bool, np.bool_)):
            raise UserError(f"coreset-model normalize must be true or false, got {normalize!r}.")
        if int(chunk) < 1:
            raise UserError(f"coreset-model chunk must be a positive integer, got {chunk}.")
        if precision not in ("fp32", "bf16"):
            raise UserError(f"coreset-model precision must be fp32 or bf16, got {precision!r}.")
        self.normalize = bool(normalize)
        self.kcenter = KCenterGreedy(chunk=int(chunk), precision=precision)

    def select(self, ctx: SelectionContext, count: int) -> np.ndarray:
        if int(count) <= 0:
            return np.zeros(0, dtype=np.int64)
        out = ctx.pool_outputs(what=("embeddings",))  # the whole pool: earlier picks are the centres
        assert out.embeddings is not None
        fields = {f.name: getattr(ctx, f.name) for f in dataclasses.fields(SelectionContext)}
        fields["features"] = out.embeddings  # the meter, report and device stay the round's own
        return self.kcenter.select(_EmbeddingContext(**fields, normalize=self.normalize), int(count))


@hookimpl
def vecaf_bench_add_selectors() -> Mapping[str, Any]:
    return {"coreset-model": CoresetModel}

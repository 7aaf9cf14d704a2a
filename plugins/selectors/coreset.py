"""coreset: greedy k-center (Sener & Savarese, 2018), exact.

dmin (distance of every sample to its nearest centre) lives on the device as one N-vector;
each pick updates it from one row of features, read in chunks, so memory is O(N) and never
an N x B matrix. Ties go to the lowest index.

Each pick reads the whole feature matrix once (a matvec), so k-center is bound by memory
bandwidth: `precision="bf16"` keeps a bf16 copy for the matvec (half the bytes; norms and
distances stay fp32), which a test shows covers the pool as well as fp32.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from vecaf_bench.api import Capabilities, SelectionContext, UserError, hookimpl

if TYPE_CHECKING:  # imported where it runs: listing plugins and argument errors need no torch
    import torch


def _min_dist_to(feats: torch.Tensor, centres: torch.Tensor, chunk: int) -> torch.Tensor:
    """min_j ||f_i - c_j|| for every row i, in (rows x chunk) blocks."""
    import torch

    sq_f = (feats * feats).sum(1)
    out = torch.full((feats.shape[0],), float("inf"), device=feats.device, dtype=feats.dtype)
    for s in range(0, centres.shape[0], chunk):
        c = centres[s : s + chunk]
        d2 = sq_f[:, None] - 2.0 * feats @ c.T + (c * c).sum(1)[None, :]
        out = torch.minimum(out, d2.clamp_min_(0).min(1).values)
    return out.sqrt_()


def _argmax_lowest(x: torch.Tensor) -> int:
    import torch

    m = x.max()
    return int(torch.nonzero(x == m)[0, 0])


class KCenterGreedy:
    capabilities = Capabilities()  # randomized: the first centre is drawn from the seed

    def __init__(self, chunk: int = 1024, precision: str = "fp32") -> None:
        if precision not in ("fp32", "bf16"):
            raise UserError(f"coreset precision must be fp32 or bf16, got '{precision}'.")
        self.chunk = int(chunk)
        self.precision = precision

    def select(self, ctx: SelectionContext, count: int) -> np.ndarray:
        import torch

        if count == 0:
            return np.zeros(0, dtype=np.int64)
        feats = ctx.features_tensor()
        n = feats.shape[0]
        sq = (feats * feats).sum(1)
        mm = feats.to(torch.bfloat16) if self.precision == "bf16" else feats

        def dist_to(u: int) -> torch.Tensor:  # one matvec: O(N) memory, no N x d temporary
            return (sq - 2.0 * (mm @ mm[u]).float() + sq[u]).clamp_min_(0).sqrt_()

        picks: list[int] = []
        if len(ctx.selected):
            taken = torch.as_tensor(np.array(ctx.selected), device=feats.device)
            dmin = _min_dist_to(feats, feats[taken], self.chunk)
            dmin[taken] = -1.0  # members never win the argmax, even when every distance is 0
        else:
            first = int(torch.randint(n, (1,), generator=ctx.generator()).item())
            picks.append(first)
            dmin = dist_to(first)
            dmin[first] = -1.0
        every = max(1, count // 100)
        while len(picks) < count:
            u = _argmax_lowest(dmin)
            picks.append(u)
            dmin = torch.minimum(dmin, dist_to(u))
            dmin[u] = -1.0
            if len(picks) % every == 0:
                ctx.report(len(picks), count)
        return np.asarray(picks, dtype=np.int64)


@hookimpl
def vecaf_bench_add_selectors() -> Mapping[str, Any]:
    return {"coreset": KCenterGreedy}

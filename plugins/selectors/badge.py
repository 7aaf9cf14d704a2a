"""badge: BADGE, Batch Active learning by Diverse Gradient Embeddings (Ash et al., ICLR 2020), built in.

Paper: J. T. Ash, C. Zhang, A. Krishnamurthy, J. Langford, A. Agarwal, "Deep Batch Active
Learning by Diverse, Uncertain Gradient Lower Bounds", ICLR 2020; public code
github.com/JordanAsh/badge (`init_centers` in query_strategies/badge_sampling.py).

Reads: ``model`` only (label-free): ``ctx.pool_outputs(what=("probs", "embeddings"))`` on the
unselected pool: the current model's softmax probabilities p_i (C) and penultimate embeddings
e_i (D). Capabilities: ``uses={"model"}, cold_start="random"`` (randomized: the k-means++ draws
come from the seed): round 0 (an untrained head) is picked by the cold-start selector, ``random``,
so badge needs ``--rounds 2`` or more; run in round 0 anyway, it works on the random head's outputs.

Method: the gradient embedding of sample i is the gradient of the cross-entropy at the
model's own prediction yhat_i = argmax p_i with respect to the last linear layer,
g_i = (p_i - onehot(yhat_i)) (x) e_i, a C*D vector whose norm is large for uncertain samples
and whose direction encodes what the sample would teach. BADGE picks the batch by k-means++
seeding on the g_i of the unselected pool: the first centre is the point of largest ||g_i||
(as the public code does: `np.argmax(norms)`; ties to the lower index), every next one is
drawn with probability proportional to D(i)^2, its squared distance to the nearest centre
picked so far.

The N x (C*D) matrix of gradient embeddings is never built. With a_i = p_i - onehot(yhat_i),
||g_i - g_j||^2 = ||a_i||^2 ||e_i||^2 + ||a_j||^2 ||e_j||^2 - 2 (a_i . a_j)(e_i . e_j),
so a pick costs one matvec with A (N x C) and one with E (N x D), and D^2 lives on the
selection device as one N-vector updated per pick (rows in chunks of `chunk`).

Sampling: `count` uniforms are drawn up front from ``ctx.rng()`` and each D^2 draw is an
inverse-CDF look-up (float64 cumulative sum, on the device): the picks do not depend on the
device's random stream, only (up to float rounding) on the seed and round.

Returns a `Selection`: scores are the picks' gradient-embedding norms ||g_i||; stats are
``grad_norm_picked`` / ``grad_norm_pool`` (means), ``d2_mean`` (mean D^2 at pick time, the
first pick excluded) and ``uniform_draws`` (see below).

Options:
    chunk: int = 65536 -- rows per block in the D^2 update (bounds the temporaries).

Cost: one forward pass over the N - |selected| unselected samples (counted by the engine; none
under a frozen backbone, where the embeddings are the cached features), then O(B N (C + D))
time for B picks (two matvecs and an O(N) cumulative sum per pick, one host sync per pick) and
O(N (C + D)) memory on the selection device (``ctx.device``).

Deviations from the public code:
- earlier picks (``ctx.selected``) are excluded from the candidates but are not centres, as in
  the public code, which seeds k-means++ on the unlabelled pool alone;
- when every remaining D^2 is zero (all gradient embeddings equal, e.g. a one-class label
  space where every g_i = 0, or duplicates) the public code divides by zero; here the rest of
  the batch is drawn uniformly from the unpicked samples (counted in ``uniform_draws``);
- a pick is never repeated (D^2 of a centre is set to exactly 0) instead of the public
  code's redraw loop; the public code's scipy `rv_discrete` sampler is replaced by the
  inverse-CDF draw above (same distribution, other random stream).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from vecaf_bench.api import Capabilities, Selection, SelectionContext, UserError, hookimpl
from vecaf_bench_plugins.selectors.coreset import _argmax_lowest

if TYPE_CHECKING:  # imported where it runs: listing plugins and argument errors need no torch
    import torch


def residuals(probs: torch.Tensor) -> torch.Tensor:
    """a_i = p_i - onehot(argmax p_i): the loss gradient w.r.t. the logits at the predicted label."""
    import torch

    a = probs.clone()
    rows = torch.arange(a.shape[0], device=a.device)
    a[rows, probs.argmax(dim=1)] -= 1.0
    return a


def grad_sq_dist(a: torch.Tensor, e: torch.Tensor, sq: torch.Tensor, c: int, chunk: int) -> torch.Tensor:
    """||g_i - g_c||^2 for every row i, where g_i = a_i (x) e_i and sq = ||a||^2 ||e||^2 (row-wise),
    without forming any g: ||a_i||^2||e_i||^2 + ||a_c||^2||e_c||^2 - 2 (a_i . a_c)(e_i . e_c)."""
    import torch

    out = torch.empty_like(sq)
    ac, ec = a[c], e[c]
    for s in range(0, a.shape[0], chunk):
        r = slice(s, s + chunk)
        out[r] = (sq[r] + sq[c] - 2.0 * (a[r] @ ac) * (e[r] @ ec)).clamp_min_(0.0)
    return out


class Badge:
    capabilities = Capabilities(uses={"model"}, cold_start="random")

    def __init__(self, chunk: int = 65536) -> None:
        if int(chunk) < 1:
            raise UserError(f"badge chunk must be >= 1, got {chunk}.")
        self.chunk = int(chunk)

    def select(self, ctx: SelectionContext, count: int) -> Selection:
        import torch

        free = ctx.unselected()
        count = min(int(count), len(free))
        if count <= 0:
            return Selection(np.zeros(0, dtype=np.int64), scores=np.zeros(0), stats={})
        out = ctx.pool_outputs(indices=free, what=("probs", "embeddings"))
        assert out.probs is not None and out.embeddings is not None
        device = torch.device(ctx.device)
        p = torch.from_numpy(np.array(out.probs, dtype=np.float32)).to(device)
        e = torch.from_numpy(np.array(out.embeddings, dtype=np.float32)).to(device)
        a = residuals(p)
        sq = (a * a).sum(1) * (e * e).sum(1)  # ||g_i||^2
        n = len(free)
        uniforms = ctx.rng().random(count)

        first = _argmax_lowest(sq)  # the public code's first centre: the largest gradient norm
        picks = [first]
        taken = torch.zeros(n, dtype=torch.bool, device=device)
        taken[first] = True
        d2 = grad_sq_dist(a, e, sq, first, self.chunk)
        d2[first] = 0.0
        d2_at_pick: list[float] = []
        uniform_draws = 0
        every = max(1, count // 100)
        for k in range(1, count):
            cum = torch.cumsum(d2.double(), 0)
            x = cum[-1:] * float(uniforms[k])
            at = torch.searchsorted(cum, x, right=True).clamp_max_(n - 1)
            # one host sync per pick: the total D^2 mass, the drawn index and its D^2
            total, j_, d2j = torch.cat([cum[-1:], at.double(), d2[at].double()]).tolist()
            j = int(j_)
            if total > 0.0:  # k-means++: P(i) proportional to D(i)^2
                if d2j <= 0.0:  # u * total rounded up to the total: the last positive weight
                    j = int(torch.nonzero(d2 > 0)[-1, 0])
                    d2j = float(d2[j])
                d2_at_pick.append(d2j)
            else:  # every remaining D^2 is 0: a uniform draw among the unpicked
                rest = torch.nonzero(~taken)[:, 0]
                j = int(rest[min(int(uniforms[k] * len(rest)), len(rest) - 1)])
                uniform_draws += 1
            picks.append(j)
            taken[j] = True
            d2 = torch.minimum(d2, grad_sq_dist(a, e, sq, j, self.chunk))
            d2[j] = 0.0  # earlier centres stay at 0: min(0, >= 0)
            if k % every == 0:
                ctx.report(k + 1, count)
        ctx.report(count, count)

        order = torch.as_tensor(picks, device=device)
        norms = sq.sqrt()
        scores = norms[order].cpu().numpy()
        stats = {
            "grad_norm_picked": float(scores.mean()),
            "grad_norm_pool": float(norms.mean()),
            "d2_mean": float(np.mean(d2_at_pick)) if d2_at_pick else 0.0,
            "uniform_draws": uniform_draws,
        }
        return Selection(free[np.asarray(picks, dtype=np.int64)], scores=scores, stats=stats)


@hookimpl
def vecaf_bench_add_selectors() -> Mapping[str, Any]:
    return {"badge": Badge}

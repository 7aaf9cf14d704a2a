"""usl: Unsupervised Selective Labeling (Wang, Lian & Yu, ECCV 2022), the training-free USL.

Paper: X. Wang, L. Lian, S. X. Yu, "Unsupervised Selective Labeling for More Effective
Semi-Supervised Learning", ECCV 2022 (arXiv 2110.03006); public code:
github.com/TonyLianLong/UnsupervisedSelectiveLabeling (selective_labeling/usl-cifar.py,
shared/utils/nn_utils*.py). USL-T (the trained variant) is not this selector.

Reads: features only (the pretrained pool features, L2-normalised). No labels, model or text.

Picks: one sample per cluster of a k-means with K = `count` clusters on the unselected samples,
chosen by representativeness with a diversity regulariser, iterated:
- density: d_i = the mean squared distance from f_i to its `knn` nearest pool samples (itself
  included, as the public kNN over the pool does); representativeness 1 / d_i;
- iteration t = 1..`iterations`: each cluster takes its member of highest
  1 / d_i - lam * R_i (ties: the lower pool index), then, except after the last,
  R <- momentum * R + (1 - momentum) * sum_s ||f_i - f_s||^(-2 alpha) over the picks s of the other
  clusters (and the earlier picks ``ctx.selected``) within squared distance `horizon` of f_i. R starts
  at 0, so iteration 1 is pure density; the last iteration's picks are returned.
- a cluster left empty by k-means takes no pick; the missing picks are the unpicked samples of highest
  final utility (stat ``empty_clusters``).
All randomness (the k-means seeding of every restart) comes from ``ctx.rng()``: same seed, same
picks. The kNN distances are exact (chunked brute force in float32), never approximate.

Returns a `Selection`: scores are the picks' final utilities 1/d - lam R; stats
``density_picked`` / ``density_pool`` (mean 1/d over the picks and the unselected samples),
``empty_clusters``, ``inertia`` (k-means) and ``regulariser_picked`` (mean R of the picks).
``self.clusters`` keeps the cluster of each unselected sample (``self.rows``) of the last call.

Options:
    knn: int = 20 -- neighbours of the density (the public default and its ImageNet setting; its
        CIFAR configs use 400).
    iterations: int = 10 -- regularised selection rounds (public default 10; 1 = density only).
    lam: float = 0.5 -- weight of the regulariser (public default W = 0.5; CIFAR-100 config 1.0).
    momentum: float = 0.9 -- of the regulariser across iterations (public default).
    horizon: float = 4.0 -- squared distance beyond which a pick does not repel (public default; on
        unit vectors 4 is the largest squared distance, so by default every pick counts).
    alpha: float = 0.5 -- the regulariser is distance^(-2 alpha) (public default 0.5: 1/distance).
    n_init: int = 1 -- k-means restarts (the run of lowest inertia is kept); the public code runs one.
    max_iter: int = 100, tol: float = 1e-4, init: "k-means++" | "random" = "k-means++" -- as kmeans.
    chunk: int = 4096 -- rows (and columns) per distance block: never N x N nor N x K.

Cost: the kNN density O(N^2 d) (blocks of chunk x chunk, a running top-k of size knn); k-means
O(N d K) per Lloyd iteration (kmeans.py's helpers); each regularisation iteration O(N K d).
Memory O(N knn + K d + chunk^2). On the selection device (GPU when there is one).

Deviations from public code: kNN and k-means are exact and seeded torch code instead of KeOps/faiss
(whose GPU kernels are not deterministic even with seeds, as the public README notes), so the same
seed gives the same picks here; k-means uses k-means++ seeding with a tolerance stop (the public code
draws K random rows and runs a fixed 200 (CIFAR) or 100 (ImageNet) iterations: init="random",
max_iter=200, tol=0 is that). The regulariser is the CIFAR variant (a distance horizon, same-cluster
picks excluded); the ImageNet variant's "nearest 128 picks" horizon is not offered. The earlier
picks of a later round repel like picks of other clusters (the public code is one-shot). An empty
cluster's pick goes to the best remaining sample instead of asking for K + 1 clusters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from vecaf_bench.api import Capabilities, Selection, SelectionContext, UserError, hookimpl
from vecaf_bench_plugins.selectors.kmeans import lloyd, seed_centres

if TYPE_CHECKING:  # imported where it runs: listing plugins and argument errors need no torch
    import torch


def sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances (len(a) x len(b)), clamped at 0."""
    sa, sb = (a * a).sum(1), (b * b).sum(1)
    return (sa[:, None] + sb[None, :] - 2.0 * a @ b.T).clamp_min_(0)


def knn_sq_dists(queries: torch.Tensor, base: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """(len(queries), k) squared distances to the k nearest rows of `base`, ascending; a query that
    is a row of `base` has itself at 0. Exact, in (chunk x chunk) blocks with a running top-k."""
    import torch

    k = min(int(k), base.shape[0])
    out = torch.empty(queries.shape[0], k, dtype=torch.float32, device=queries.device)
    for s in range(0, queries.shape[0], chunk):
        q = queries[s : s + chunk]
        best = torch.full((q.shape[0], k), float("inf"), dtype=torch.float32, device=q.device)
        for t in range(0, base.shape[0], chunk):
            block = sq_dists(q, base[t : t + chunk]).float()
            best = torch.cat([best, block], dim=1).topk(k, dim=1, largest=False).values
        out[s : s + chunk] = best.sort(dim=1).values
    return out


def cluster_argmax(score: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """For each cluster the row of highest score (ties: the lower row); len(score) for an empty cluster."""
    import torch

    n = score.shape[0]
    best = torch.full((k,), -float("inf"), dtype=score.dtype, device=score.device)
    best = best.scatter_reduce(0, labels, score, "amax")
    rows = torch.nonzero(score == best[labels])[:, 0]
    first = torch.full((k,), n, dtype=torch.long, device=score.device)
    return first.scatter_reduce(0, labels[rows], rows, "amin")


def repulsion(
    x: torch.Tensor,
    labels: torch.Tensor,
    picks: torch.Tensor,
    pick_labels: torch.Tensor,
    earlier: torch.Tensor,
    horizon: float,
    alpha: float,
    chunk: int,
) -> torch.Tensor:
    """sum over picks s of other clusters (and the earlier picks) within squared distance `horizon`
    of ||x_i - s||^(-2 alpha), for every row i, in (chunk x K) blocks (float64)."""
    import torch

    def term(d2: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        return torch.where(keep, d2.clamp_min(1e-12).pow(-alpha), torch.zeros_like(d2)).sum(1)

    sel = x[picks]
    out = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for s in range(0, x.shape[0], chunk):
        r = x[s : s + chunk]
        d2 = sq_dists(r, sel).double()
        out[s : s + chunk] = term(d2, (d2 < horizon) & (labels[s : s + chunk, None] != pick_labels[None, :]))
        if earlier.shape[0]:
            d2 = sq_dists(r, earlier).double()
            out[s : s + chunk] += term(d2, d2 < horizon)
    return out


class USL:
    capabilities = Capabilities()  # randomized: the k-means seeding comes from the seed

    def __init__(
        self,
        knn: int = 20,
        iterations: int = 10,
        lam: float = 0.5,
        momentum: float = 0.9,
        horizon: float = 4.0,
        alpha: float = 0.5,
        n_init: int = 1,
        max_iter: int = 100,
        tol: float = 1e-4,
        init: str = "k-means++",
        chunk: int = 4096,
    ) -> None:
        if init not in ("k-means++", "random"):
            raise UserError(f"usl init must be 'k-means++' or 'random', got {init!r}.")
        counts = {
            "knn": knn,
            "iterations": iterations,
            "n_init": n_init,
            "max_iter": max_iter,
            "chunk": chunk,
        }
        for name, value in counts.items():
            if int(value) < 1:
                raise UserError(f"usl {name} must be a positive integer, got {value}.")
        for name, real in (("lam", lam), ("horizon", horizon), ("alpha", alpha), ("tol", tol)):
            if not float(real) >= 0:
                raise UserError(f"usl {name} must be >= 0, got {real}.")
        if not 0.0 <= float(momentum) < 1.0:
            raise UserError(f"usl momentum must be in [0, 1), got {momentum}.")
        self.knn, self.iterations, self.n_init = int(knn), int(iterations), int(n_init)
        self.max_iter, self.lam, self.momentum = int(max_iter), float(lam), float(momentum)
        self.horizon, self.alpha = float(horizon), float(alpha)
        self.tol, self.init, self.chunk = float(tol), init, int(chunk)
        self.clusters = np.zeros(0, dtype=np.int64)
        self.rows = np.zeros(0, dtype=np.int64)

    def select(self, ctx: SelectionContext, count: int) -> Selection:
        import torch

        free = ctx.unselected()
        k = min(int(count), len(free))
        if k <= 0:
            return Selection(np.zeros(0, dtype=np.int64), scores=np.zeros(0), stats={})
        feats = ctx.features_tensor()
        dev = feats.device
        x = feats[torch.as_tensor(free, device=dev)]
        earlier = feats[torch.as_tensor(np.array(ctx.selected, dtype=np.int64), device=dev)]
        steps = self.n_init + self.iterations + 1
        d = knn_sq_dists(x, feats, self.knn, self.chunk).double().mean(1)
        density = 1.0 / d.clamp_min(1e-12)
        ctx.report(1, steps)

        rng = ctx.rng()
        best: tuple[float, torch.Tensor] | None = None
        for r in range(self.n_init):  # one generator: each restart draws on from where the last stopped
            start = seed_centres(x, k, rng, self.init == "k-means++")
            _, labels, inertia = lloyd(x, start, self.max_iter, self.tol, self.chunk)
            if best is None or inertia < best[0]:
                best = (inertia, labels)
            ctx.report(2 + r, steps)
        assert best is not None
        inertia, labels = best

        reg = torch.zeros_like(density)
        for it in range(self.iterations):
            utility = density - self.lam * reg
            picks = cluster_argmax(utility, labels, k)
            picks = picks[picks < len(free)]
            ctx.report(2 + self.n_init + it, steps)
            if it == self.iterations - 1:
                break  # the last iteration's picks are the answer
            new = repulsion(x, labels, picks, labels[picks], earlier, self.horizon, self.alpha, self.chunk)
            reg = self.momentum * reg + (1.0 - self.momentum) * new
        chosen = picks.cpu().numpy()
        empty = k - len(chosen)
        if empty:  # clusters k-means left empty: the best remaining utilities
            rest = utility.clone()
            rest[picks] = -float("inf")
            order = torch.sort(-rest, stable=True).indices[:empty].cpu().numpy()
            chosen = np.concatenate([chosen, order])
        ctx.report(steps, steps)
        self.clusters, self.rows = labels.cpu().numpy(), free
        at = torch.as_tensor(chosen, device=dev)
        stats = {
            "density_picked": float(density[at].mean()),
            "density_pool": float(density.mean()),
            "regulariser_picked": float(reg[at].mean()),
            "empty_clusters": int(empty),
            "inertia": float(inertia),
        }
        return Selection(free[chosen], scores=utility[at].cpu().numpy(), stats=stats)


@hookimpl
def vecaf_bench_add_selectors() -> Mapping[str, Any]:
    return {"usl": USL}

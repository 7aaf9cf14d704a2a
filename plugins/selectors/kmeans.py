"""kmeans: K = B centroids on the L2-normalised pool features; the sample nearest each centroid.

Paper: the "K-Means" baseline of ActiveFT (Xie et al., CVPR 2023, Table 1) and of most
cold-start active-learning papers (e.g. TypiClust, ProbCover use it as their clustering step).

Reads: features only (the pretrained pool features, L2-normalised). No labels, model or text.

Picks: Lloyd's k-means with K = `count` on the unselected samples, k-means++ seeding (or uniform
`init="random"`), `n_init` restarts (the run of lowest inertia is kept), at most `max_iter`
iterations, stopping when the centres move by less than `tol` x the features' mean variance (as
scikit-learn). Each cluster's pick is its member nearest the centroid, so picks are unique by
construction; an empty cluster takes the nearest sample not yet taken. All randomness (the
seeding draws of every restart) comes from ``ctx.rng()``: same seed, same picks.

Options:
    n_init: int = 3 -- restarts; ActiveDC's rerun of ActiveFT's table moved k-means by ~9 points
        at CIFAR-100 2% through init and restarts alone, so they are exposed.
    max_iter: int = 100 -- Lloyd iterations per restart.
    tol: float = 1e-4 -- relative centre shift that counts as converged.
    init: "k-means++" | "random" = "k-means++".
    chunk: int = 4096 -- rows per distance block (memory: chunk x K floats, never N x K).

Cost: k-means++ O(N d K) (one matvec per centre, as k-center); each Lloyd iteration O(N d K) in
(chunk x K) blocks; memory O(N + K d + chunk K). On the selection device (GPU when there is one).

Deviations from public code: none in the objective. Seeding is plain k-means++ (Arthur &
Vassilvitskii, 2007); scikit-learn's greedy variant tries 2 + ln K candidates per centre and
ends ~0.6% lower in inertia on digits (tests/test_kmeans.py). Unlike faiss's k-means (which silently trains
on at most K x 256 points) every sample is used; unlike scikit-learn an empty cluster keeps its
centre instead of being moved to a far point (with k-means++ seeding it stays rare).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from vecaf_bench.api import Capabilities, SelectionContext, UserError, hookimpl

if TYPE_CHECKING:  # imported where it runs: listing plugins and argument errors need no torch
    import torch


def assign(feats: torch.Tensor, centres: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(nearest centre of each row, its squared distance), in (chunk x K) blocks."""
    import torch

    sq_c = (centres * centres).sum(1)
    labels = torch.empty(feats.shape[0], dtype=torch.long, device=feats.device)
    d2min = torch.empty(feats.shape[0], dtype=feats.dtype, device=feats.device)
    for s in range(0, feats.shape[0], chunk):
        f = feats[s : s + chunk]
        d2 = ((f * f).sum(1)[:, None] - 2.0 * (f @ centres.T) + sq_c[None, :]).clamp_min_(0)
        v, i = d2.min(1)
        labels[s : s + chunk], d2min[s : s + chunk] = i, v
    return labels, d2min


def seed_centres(feats: torch.Tensor, k: int, rng: np.random.Generator, plus_plus: bool) -> torch.Tensor:
    """k-means++ (D^2 sampling: each next centre drawn with probability proportional to its squared
    distance to the nearest centre so far) or k distinct uniform rows; draws from `rng` only."""
    import torch

    n = feats.shape[0]
    if not plus_plus:
        return feats[torch.as_tensor(rng.choice(n, size=k, replace=False), device=feats.device)].clone()
    sq = (feats * feats).sum(1)

    def d2_to(u: int) -> torch.Tensor:  # squared distance of every row to row u: one matvec
        return (sq - 2.0 * (feats @ feats[u]) + sq[u]).clamp_min_(0)

    idx = [int(rng.integers(n))]
    d2 = d2_to(idx[0])
    for _ in range(1, k):
        cum = torch.cumsum(d2.double(), 0)
        total = float(cum[-1])
        if total <= 0:  # fewer distinct points than centres: the lowest index not yet a centre
            taken = set(idx)
            u = next(i for i in range(n) if i not in taken)
        else:
            target = torch.tensor([rng.random() * total], dtype=cum.dtype, device=cum.device)
            u = min(int(torch.searchsorted(cum, target)), n - 1)
        idx.append(u)
        d2 = torch.minimum(d2, d2_to(u))
    return feats[torch.as_tensor(idx, device=feats.device)].clone()


def lloyd(feats: torch.Tensor, centres: torch.Tensor, max_iter: int, tol: float, chunk: int
          ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(centres, labels, inertia) after Lloyd iterations from `centres`."""
    import torch

    k = centres.shape[0]
    threshold = tol * float(feats.var(0).mean())
    labels, d2 = assign(feats, centres, chunk)
    for _ in range(max_iter):
        sums = torch.zeros_like(centres).index_add_(0, labels, feats)
        counts = torch.bincount(labels, minlength=k).to(feats.dtype)
        new = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centres)
        shift = float(((new - centres) ** 2).sum(1).sum())
        centres = new
        labels, d2 = assign(feats, centres, chunk)
        if shift <= threshold:
            break
    return centres, labels, float(d2.double().sum())


def nearest_members(feats: torch.Tensor, centres: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """For each centre, the member of its cluster nearest to it (ties: the lower row); an empty
    cluster takes the nearest row not yet taken. Unique: clusters are disjoint."""
    import torch

    n, k = feats.shape[0], centres.shape[0]
    d2 = ((feats - centres[labels]) ** 2).sum(1)
    mins = torch.full((k,), float("inf"), dtype=d2.dtype, device=d2.device).scatter_reduce(0, labels, d2, "amin")
    rows = torch.nonzero(d2 == mins[labels]).squeeze(1)
    first = torch.full((k,), n, dtype=torch.long, device=d2.device).scatter_reduce(0, labels[rows], rows, "amin")
    picks = first.cpu().numpy()
    taken = set(int(p) for p in picks if p < n)
    for c in np.flatnonzero(picks >= n):
        dist = ((feats - centres[c]) ** 2).sum(1).cpu().numpy()
        i = next(int(i) for i in np.argsort(dist, kind="stable") if int(i) not in taken)
        picks[c] = i
        taken.add(i)
    return picks.astype(np.int64)


class KMeans:
    capabilities = Capabilities()  # randomized: the seeding draws come from the seed

    def __init__(self, n_init: int = 3, max_iter: int = 100, tol: float = 1e-4, init: str = "k-means++",
                 chunk: int = 4096) -> None:
        if init not in ("k-means++", "random"):
            raise UserError(f"kmeans init must be 'k-means++' or 'random', got {init!r}.")
        for name, value in (("n_init", n_init), ("max_iter", max_iter), ("chunk", chunk)):
            if int(value) < 1:
                raise UserError(f"kmeans {name} must be a positive integer, got {value}.")
        if float(tol) < 0:
            raise UserError(f"kmeans tol must be >= 0, got {tol}.")
        self.n_init, self.max_iter, self.tol = int(n_init), int(max_iter), float(tol)
        self.init, self.chunk = init, int(chunk)

    def select(self, ctx: SelectionContext, count: int) -> np.ndarray:
        import torch

        free = np.setdiff1d(np.arange(ctx.pool_size), np.asarray(ctx.selected, dtype=np.int64))
        k = min(int(count), len(free))
        if k <= 0:
            return np.zeros(0, dtype=np.int64)
        feats = ctx.features_tensor()[torch.as_tensor(free, device=ctx.device)]
        rng = ctx.rng()
        best: tuple[float, torch.Tensor, torch.Tensor] | None = None
        for r in range(self.n_init):  # one generator: each restart draws on from where the last stopped
            start = seed_centres(feats, k, rng, self.init == "k-means++")
            centres, labels, inertia = lloyd(feats, start, self.max_iter, self.tol, self.chunk)
            if best is None or inertia < best[0]:
                best = (inertia, centres, labels)
            ctx.report(r + 1, self.n_init)
        assert best is not None
        return free[nearest_members(feats, best[1], best[2])]


@hookimpl
def vecaf_bench_add_selectors() -> Mapping[str, Any]:
    return {"kmeans": KMeans}

"""bilaf: Bi-Level Active Finetuning (Lu, Xie, Yang & Yan, NeurIPS 2024): core samples by ActiveFT,
then boundary samples of each pseudo-class.

Paper: H. Lu, Y. Xie, X. Yang, J. Yan, "Boundary Matters: A Bi-Level Active Finetuning Method",
NeurIPS 2024 (arXiv 2403.10069); public code: github.com/Thinklab-SJTU/BiLAF
(data_selection/Boundary_Selection/density_cluster.py).

Reads: features only (the pretrained pool features, L2-normalised). No labels, model or text
(``ctx.num_classes``, the size of the label space, only sets the default number of cores).

Picks, all on the unselected samples (distances Euclidean):
1. Core samples: K = `cores` pseudo-class centres picked by activeft.py's ActiveFT (its code,
   called with ``iterations=core_iterations``); they are picks.
2. Pseudo-classes: every unselected sample joins its nearest core. Opponent of a sample: its
   nearest other core; outer distance: the distance to it.
3. Denoising, per pseudo-class of m >= `density_k` samples (the public code: >= 10): grow a dense
   set from the core -- first the s = int(growth x m) (>= 1) samples nearest the core, then, for
   each of the next m // s - 1 steps, the s outside samples of smallest mean distance to their
   `density_k` nearest samples inside -- and keep the first (1 - `remove`) of the samples in the
   order they joined: the last-joining (sparsest) `remove` of them, and any never reached, are
   noise.
4. Budget: `count` (cores included) split over the pseudo-classes in proportion to their denoised
   sizes (largest remainder, each at least 1: its core; at most its size).
5. Boundary samples, per pseudo-class with budget B_i over its denoised set U_i: starting from
   the core, after each pick the int(|U_i| / B_i) - 1 candidates nearest it leave the candidate
   set (the pick itself leaves too), the opponent of the pick (for picks after the core) has its
   penalty multiplied by `penalty`, and the next pick is the candidate of lowest boundary score
   (outer * penalty[opponent] - inner) / max(outer, inner), inner = the mean distance to U_i
   (ties: the lower pool index). A pseudo-class whose candidates run out takes its unpicked
   denoised samples back, then its noise (stat ``refills``).
With one core there is no opponent: outer = 1e9, as the public code. Randomness: ActiveFT's
(``ctx.generator()``); stage 2 is deterministic.

Returns a `Selection`: the cores first (ActiveFT's order), then each pseudo-class's boundary
picks in pick order; scores: 2.0 for a core (above any boundary pick), minus the boundary score at
pick time for a boundary pick (higher: more on the boundary). Stats: ``cores``, ``noise``
(samples removed by denoising), ``refills``, ``boundary_score_mean`` (over the boundary picks),
``activeft_loss`` (ActiveFT's final loss).

Options:
    cores: int | None = None -- K. None: round(core_fraction x pool size), at least the number of
        classes when it is known (and 1), at most count - 1 (so at least one boundary pick; K = 1 when
        count = 1).
    core_fraction: float | None = None -- None: the paper's, 0.1% of the pool for <= 10 classes
        (CIFAR-10), 0.5% otherwise (CIFAR-100, ImageNet).
    core_iterations: int = 300 -- ActiveFT's iterations (its released default).
    density_k: int = 10 -- neighbours of the denoising density (public default).
    remove: float = 0.1 -- fraction removed as noise (public default, P_rm).
    growth: float = 0.1 -- fraction of the pseudo-class added per growth step (public default).
    penalty: float = 1.1 -- the same-opponent penalty ratio (public default).
    chunk: int = 4096 -- rows (and columns) per distance block.

Cost: ActiveFT (O(N K d) per iteration), the assignment O(N K d), per pseudo-class of size m the
denoising O(m^2 d) (about 1/growth passes over growing parts of it) and the inner distances
O(m^2 d), then O(m d) per boundary pick: about O(N^2 d / K) in all, never N x N nor m x m at once
(chunk x chunk blocks). On the selection device.

Deviations from public code: the budget split is largest remainder over the denoised sizes with at
least one pick (the core) per pseudo-class; the public code floors and gives the rest one at a time
to the smallest allocation (which can give a small class more than 1 above its share). A class whose
candidates run out refills (the public code would fail or repeat a pick), picks are never repeated,
and ties go to the lower pool index. Later rounds work on the unselected pool (the public code is
one-shot); earlier picks are neither cores nor candidates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from vecaf_bench.api import Capabilities, Selection, SelectionContext, UserError, hookimpl
from vecaf_bench_plugins.selectors.activeft import ActiveFT
from vecaf_bench_plugins.selectors.usl import knn_sq_dists, sq_dists

if TYPE_CHECKING:  # imported where it runs: listing plugins and argument errors need no torch
    import torch

NO_OPPONENT = 1e9  # the outer distance with a single core (the public code's 1e9 + 7)


def core_count(pool: int, count: int, num_classes: int, fraction: float | None, cores: int | None) -> int:
    """K: `cores`, or round(fraction x pool) floored at the number of classes; in [1, count - 1]."""
    if cores is None:
        if fraction is None:
            fraction = 0.001 if 0 < num_classes <= 10 else 0.005
        cores = max(1, int(round(fraction * pool)), int(num_classes))
    return 1 if count <= 1 else max(1, min(int(cores), count - 1))


def nearest_cores(
    x: torch.Tensor,
    cores: torch.Tensor,
    chunk: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(nearest core, distance to the nearest *other* core, that core) of every row; with one core
    the other distance is NO_OPPONENT and the opponent index is K (a slot with no penalty)."""
    import torch

    n, k = x.shape[0], cores.shape[0]
    label = torch.empty(n, dtype=torch.long, device=x.device)
    outer = torch.full((n,), NO_OPPONENT, dtype=torch.float64, device=x.device)
    opp = torch.full((n,), k, dtype=torch.long, device=x.device)
    for s in range(0, n, chunk):
        d2 = sq_dists(x[s : s + chunk], cores)
        label[s : s + chunk] = d2.argmin(1)
        if k > 1:
            d2.scatter_(1, label[s : s + chunk, None], float("inf"))
            v, i = d2.min(1)
            outer[s : s + chunk], opp[s : s + chunk] = v.double().sqrt(), i
    return label, outer, opp


def denoise(x: torch.Tensor, core: int, knn: int, remove: float, growth: float, chunk: int) -> np.ndarray:
    """The kept positions of a pseudo-class `x` (rows) whose core is row `core`, in joining order."""
    import torch

    m = x.shape[0]
    if m < knn:
        return np.arange(m, dtype=np.int64)
    step = max(1, int(m * growth))
    d_core = sq_dists(x[core : core + 1], x)[0]
    order = [torch.sort(d_core, stable=True).indices[:step]]
    inside = torch.zeros(m, dtype=torch.bool, device=x.device)
    inside[order[0]] = True
    for _ in range(2, m // step + 1):
        out = torch.nonzero(~inside)[:, 0]
        if len(out) == 0:
            break
        near = knn_sq_dists(x[out], x[inside], knn, chunk).sqrt().double().mean(1)
        joined = out[torch.sort(near, stable=True).indices[:step]]
        order.append(joined)
        inside[joined] = True
    joined_all = torch.cat(order).cpu().numpy()
    return joined_all[: int(len(joined_all) * (1.0 - remove))]


def mean_distance(x: torch.Tensor, to: torch.Tensor, chunk: int) -> torch.Tensor:
    """Mean Euclidean distance from every row of x to the rows of `to` (float64), in blocks."""
    import torch

    out = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for s in range(0, x.shape[0], chunk):
        for t in range(0, to.shape[0], chunk):
            out[s : s + chunk] += sq_dists(x[s : s + chunk], to[t : t + chunk]).double().sqrt().sum(1)
    return out / max(1, to.shape[0])


def apportion(count: int, sizes: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """`count` split in proportion to `sizes`: each share within 1 of count x size / total, at least
    1 and at most its capacity (largest remainder; ties to the lower index). Needs
    len(sizes) <= count <= capacity.sum()."""
    sizes = np.asarray(sizes, dtype=np.float64)
    capacity = np.asarray(capacity, dtype=np.int64)
    quota = count * sizes / sizes.sum()
    alloc = np.clip(np.floor(quota).astype(np.int64), 1, capacity)
    while alloc.sum() > count:  # the floors of 1 overshot: take from the most over their quota
        over = np.where(alloc > 1, alloc - quota, -np.inf)
        alloc[int(np.argmax(over))] -= 1
    while alloc.sum() < count:
        short = np.where(alloc < capacity, quota - alloc, -np.inf)
        alloc[int(np.argmax(short))] += 1
    return alloc


def boundary_picks(
    x: torch.Tensor,
    core: int,
    kept: np.ndarray,
    budget: int,
    outer: torch.Tensor,
    opp: torch.Tensor,
    penalty: float,
    slots: int,
    chunk: int,
) -> tuple[list[int], list[float], int]:
    """The `budget` picks (positions in x, the core first) of one pseudo-class, their boundary
    scores (nan for the core) and the number of refills."""
    import torch

    m, dev = x.shape[0], x.device
    kept_t = torch.as_tensor(kept, device=dev)
    inner = mean_distance(x, x[kept_t], chunk)
    denom = torch.maximum(outer, inner).clamp_min(1e-12)
    in_kept = torch.zeros(m, dtype=torch.bool, device=dev)
    in_kept[kept_t] = True
    picked = torch.zeros(m, dtype=torch.bool, device=dev)
    picked[core] = True
    cand = in_kept & ~picked
    pen = torch.ones(slots + 1, dtype=torch.float64, device=dev)  # slot `slots`: no opponent
    drop = max(1, len(kept) // max(1, budget)) - 1  # the pick and its `drop` nearest candidates leave
    picks, scores, refills, node = [core], [float("nan")], 0, core
    while len(picks) < budget:
        if drop > 0 and bool(cand.any()):
            d = sq_dists(x[node : node + 1], x)[0]
            d = torch.where(cand, d, torch.full_like(d, float("inf")))
            nearest = torch.sort(d, stable=True).indices[: min(drop, int(cand.sum()))]
            cand[nearest] = False
        if node != core:
            pen[opp[node]] *= penalty
        if not bool(cand.any()):
            refills += 1
            cand = in_kept & ~picked
            if not bool(cand.any()):
                cand = ~picked
        score = (outer * pen[opp] - inner) / denom
        score = torch.where(cand, score, torch.full_like(score, float("inf")))
        low = float(score.min())
        node = int(torch.nonzero(score == low)[0, 0])
        picks.append(node)
        scores.append(low)
        picked[node] = True
        cand[node] = False
    return picks, scores, refills


class BiLAF:
    capabilities = Capabilities()  # randomized: ActiveFT's initial centres come from the seed

    def __init__(
        self,
        cores: int | None = None,
        core_fraction: float | None = None,
        core_iterations: int = 300,
        density_k: int = 10,
        remove: float = 0.1,
        growth: float = 0.1,
        penalty: float = 1.1,
        chunk: int = 4096,
    ) -> None:
        if cores is not None and int(cores) < 1:
            raise UserError(f"bilaf cores must be >= 1, or None (from core_fraction), got {cores}.")
        if core_fraction is not None and not 0.0 < float(core_fraction) < 1.0:
            raise UserError(f"bilaf core_fraction must be in (0, 1) or None, got {core_fraction}.")
        for name, value in (("core_iterations", core_iterations), ("density_k", density_k), ("chunk", chunk)):
            if int(value) < 1:
                raise UserError(f"bilaf {name} must be a positive integer, got {value}.")
        if not 0.0 <= float(remove) < 1.0:
            raise UserError(f"bilaf remove must be in [0, 1), got {remove}.")
        if not 0.0 < float(growth) <= 1.0:
            raise UserError(f"bilaf growth must be in (0, 1], got {growth}.")
        if not (float(penalty) >= 1.0 and math.isfinite(float(penalty))):
            raise UserError(f"bilaf penalty must be a number >= 1, got {penalty}.")
        self.cores = None if cores is None else int(cores)
        self.core_fraction = None if core_fraction is None else float(core_fraction)
        self.core_iterations, self.density_k, self.chunk = int(core_iterations), int(density_k), int(chunk)
        self.remove, self.growth, self.penalty = float(remove), float(growth), float(penalty)
        self.core_picks = np.zeros(0, dtype=np.int64)
        self.pseudo_classes: list[np.ndarray] = []  # pool indices of each core's pseudo-class (ascending)
        self.denoised_sizes = np.zeros(0, dtype=np.int64)
        self.allocation = np.zeros(0, dtype=np.int64)

    def select(self, ctx: SelectionContext, count: int) -> Selection:
        import torch

        free = ctx.unselected()
        count = min(int(count), len(free))
        if count <= 0:
            return Selection(np.zeros(0, dtype=np.int64), scores=np.zeros(0), stats={})
        k = core_count(ctx.pool_size, count, ctx.num_classes, self.core_fraction, self.cores)
        core_fit = ActiveFT(iterations=self.core_iterations)
        cores = np.asarray(core_fit.select(ctx, k), dtype=np.int64)
        self.core_picks = cores

        feats = ctx.features_tensor()
        dev = feats.device
        x = feats[torch.as_tensor(free, device=dev)]
        core_pos = np.searchsorted(free, cores)  # cores are unselected samples: rows of x
        label, outer, opp = nearest_cores(x, x[torch.as_tensor(core_pos, device=dev)], self.chunk)
        label[torch.as_tensor(core_pos, device=dev)] = torch.arange(k, device=dev)  # a core is its own class
        label_np = label.cpu().numpy()
        members = [np.flatnonzero(label_np == j) for j in range(k)]
        kept, noise = [], 0
        for j in range(k):
            xj = x[torch.as_tensor(members[j], device=dev)]
            core_j = int(np.searchsorted(members[j], core_pos[j]))
            kept.append(denoise(xj, core_j, self.density_k, self.remove, self.growth, self.chunk))
            noise += len(members[j]) - len(kept[j])
            ctx.report(j + 1, 2 * k)
        sizes = np.array([len(u) for u in kept], dtype=np.int64)
        alloc = apportion(count, sizes, np.array([len(mj) for mj in members]))
        self.denoised_sizes, self.allocation = sizes, alloc

        boundary, boundary_scores, refills = [], [], 0
        self.pseudo_classes = []
        for j in range(k):
            rows = torch.as_tensor(members[j], device=dev)
            core_j = int(np.searchsorted(members[j], core_pos[j]))
            picks, scores, r = boundary_picks(
                x[rows], core_j, kept[j], int(alloc[j]), outer[rows], opp[rows], self.penalty, k, self.chunk
            )
            refills += r
            boundary.extend(free[members[j][picks[1:]]].tolist())
            boundary_scores.extend(scores[1:])
            self.pseudo_classes.append(free[members[j]])
            ctx.report(k + j + 1, 2 * k)
        indices = np.concatenate([cores, np.asarray(boundary, dtype=np.int64)])
        order_scores = np.concatenate([np.full(k, 2.0), -np.asarray(boundary_scores, dtype=np.float64)])
        stats = {
            "cores": int(k),
            "noise": int(noise),
            "refills": int(refills),
            "boundary_score_mean": float(np.mean(boundary_scores)) if boundary_scores else 0.0,
            "activeft_loss": float(core_fit.history[-1]) if core_fit.history else 0.0,
        }
        return Selection(indices, scores=order_scores, stats=stats)


@hookimpl
def vecaf_bench_add_selectors() -> Mapping[str, Any]:
    return {"bilaf": BiLAF}

"""typiclust: TPC-RP, the most typical sample of each least-covered k-means cluster.

Paper: Hacohen, Dekel & Weinshall, "Active Learning on a Budget: Opposite Strategies Suit High
and Low Budgets", ICML 2022 (TypiClust, the TPC-RP variant: clustering on the pretrained
representation, no self-labelling).

Reads: features only (the pretrained pool features, L2-normalised). No labels, model or text.

Picks: k-means (this package's `kmeans` steps: k-means++ seeding from ``ctx.rng()``, Lloyd's
iterations) into K = min(|selected| + `count`, `max_clusters`) clusters over the whole pool,
earlier picks included. Clusters of <= `min_cluster_size` points are skipped. Then, `count`
times: the cluster with the fewest selected points (earlier picks and this round's; ties: the
larger cluster, then the lower cluster id) gives its unselected point of highest typicality,

    typicality(x) = 1 / (mean_{x' in kNN(x)} ||x - x'|| + 1e-5),

kNN(x) = the k = min(`knn`, cluster size - 1) nearest other members of x's cluster (selected
ones included; a cluster of one point has typicality 0). Ties go to the lower pool index.
Duplicate points have distance 0: typicality 1e5, finite (scikit-activeml #451 divided by zero
there). When every large cluster is exhausted the skipped clusters take their turn by the same
rule, then any unselected point, so `count` picks are always returned. The score of each pick is
its typicality; stats: clusters, large and skipped clusters (and the points in the skipped
ones), picks that fell back to skipped clusters, k-means inertia.

Options:
    max_clusters: int = 500 -- the paper's cap on K.
    min_cluster_size: int = 5 -- clusters of at most this many points are skipped (paper: 5).
    knn: int = 20 -- neighbours in the typicality (paper: 20).
    n_init: int = 1 -- k-means restarts (the run of lowest inertia is kept).
    max_iter: int = 100 -- Lloyd iterations per restart (stopping earlier at tol 1e-4, as kmeans).
    chunk: int = 1024 -- rows per distance block: k-means holds chunk x K floats, the kNN
        chunk x (cluster size), never N x N.

Cost: k-means O(n_init x max_iter x N K d) in (chunk x K) blocks; typicality O(sum_c n_c^2 d)
over the clusters (N^2 d / K for balanced clusters), then the k neighbour distances recomputed
from the differences, O(N k d); the picks O(B log K). Memory O(N + K d + chunk x max n_c).
On the selection device (GPU when there is one). N = 100k, d = 384, B = 1,000: k-means
dominates (its k-means++ seeding, K = 500 passes over the pool, then Lloyd's iterations).

Deviations from public code (github.com/avihu111/TypiClust, deep-al/pycls/al/typiclust.py):
- typicality uses Euclidean distances, as the paper's formula; the public code averages faiss's
  *squared* L2 distances (the order within a cluster can differ slightly);
- typicality is computed once per cluster over all its members with k = min(20, size - 1);
  the public code recomputes it before every pick over the cluster's not-yet-labelled members
  with k = min(20, size // 2);
- the cluster order is updated after each pick (fewest selected first); the public code sorts
  once and cycles through that order, which gives the same picks while B <= the number of large
  clusters and differs after;
- k-means: one seeded k-means for every K (the public code uses scikit-learn KMeans for K <= 50
  and MiniBatchKMeans, batch 5000, above, without passing the seed: scikit-activeml #503);
- a cluster whose members are all selected is passed over; in the public code such a cluster
  leaves an empty candidate set to the kNN search.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from vecaf_bench.api import Capabilities, Selection, SelectionContext, UserError, hookimpl
from vecaf_bench_plugins.selectors.kmeans import lloyd, seed_centres

if TYPE_CHECKING:  # imported where it runs: listing plugins and argument errors need no torch
    import torch

EPS = 1e-5  # the public code's guard: 1 / (mean distance + 1e-5)


def typicality(feats: torch.Tensor, members: torch.Tensor, knn: int, chunk: int) -> torch.Tensor:
    """1 / (mean distance to the k nearest other members + 1e-5) of each of `members` (row indices
    into feats), k = min(knn, len(members) - 1); 0 for a single member. Row blocks of `chunk`
    against the cluster; the k neighbours found by a matmul, their distances then recomputed from
    the differences (accurate to rounding, and exactly 0 between duplicates)."""
    import torch

    m = int(members.shape[0])
    k = min(int(knn), m - 1)
    out = torch.zeros(m, dtype=torch.float64, device=feats.device)
    if k <= 0:
        return out
    fm = feats[members]
    sq = (fm * fm).sum(1)
    for s in range(0, m, chunk):
        e = min(m, s + chunk)
        d2 = sq[s:e, None] - 2.0 * (fm[s:e] @ fm.T) + sq[None, :]
        d2[torch.arange(e - s, device=d2.device), torch.arange(s, e, device=d2.device)] = float("inf")
        nbr = torch.topk(d2, k, dim=1, largest=False, sorted=False).indices  # (rows, k)
        diff = fm[s:e, None, :] - fm[nbr]
        mean = diff.pow_(2).sum(2).sqrt_().double().mean(1)
        out[s:e] = 1.0 / (mean + EPS)
    return out


def pick_order(
    labels: np.ndarray, typ: Any, selected: np.ndarray, count: int, min_cluster_size: int
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """(picks, their typicality, counters): `count` times the least-covered cluster's most typical
    unselected point. `typ(c)` gives (members ascending, typicality) of cluster c on demand."""
    k = int(labels.max()) + 1 if len(labels) else 0
    sizes = np.bincount(labels, minlength=k)
    have = np.bincount(labels[selected], minlength=k) if len(selected) else np.zeros(k, dtype=np.int64)
    taken = np.zeros(len(labels), dtype=bool)
    taken[selected] = True
    queues: dict[int, list[int]] = {}  # cluster -> its unselected members, most typical last
    scores: dict[int, float] = {}

    def queue(c: int) -> list[int]:
        if c not in queues:
            members, t = typ(c)
            order = np.lexsort((members, -t))  # typicality descending, ties: lower index
            q = [int(members[i]) for i in order if not taken[members[i]]]
            scores.update({int(members[i]): float(t[i]) for i in order})
            queues[c] = q[::-1]
        return queues[c]

    large = [c for c in range(k) if sizes[c] > min_cluster_size]
    small = [c for c in range(k) if 0 < sizes[c] <= min_cluster_size]
    picks: list[int] = []
    fallback = 0
    for tier, clusters in ((0, large), (1, small)):
        heap = [(int(have[c]), -int(sizes[c]), c) for c in clusters]
        heapq.heapify(heap)
        while heap and len(picks) < count:
            n_have, neg_size, c = heapq.heappop(heap)
            q = queue(c)
            while q and taken[q[-1]]:
                q.pop()
            if not q:  # exhausted: every member selected
                continue
            u = q.pop()
            taken[u] = True
            picks.append(u)
            fallback += tier
            heapq.heappush(heap, (n_have + 1, neg_size, c))
    rest = np.flatnonzero(~taken)[: count - len(picks)]  # unreachable: every point is in a cluster
    out = np.array(picks + rest.tolist(), dtype=np.int64)
    sc = np.array([scores.get(int(i), 0.0) for i in out], dtype=np.float64)
    return (
        out,
        sc,
        {
            "large_clusters": len(large),
            "skipped_clusters": len(small),
            "skipped_points": int(sizes[small].sum()) if small else 0,
            "fallback_picks": fallback,
        },
    )


class TypiClust:
    capabilities = Capabilities()  # randomized: the k-means seeding draws come from the seed

    def __init__(
        self,
        max_clusters: int = 500,
        min_cluster_size: int = 5,
        knn: int = 20,
        n_init: int = 1,
        max_iter: int = 100,
        chunk: int = 1024,
    ) -> None:
        for name, value, low in (
            ("max_clusters", max_clusters, 1),
            ("min_cluster_size", min_cluster_size, 0),
            ("knn", knn, 1),
            ("n_init", n_init, 1),
            ("max_iter", max_iter, 1),
            ("chunk", chunk, 1),
        ):
            if isinstance(value, bool) or int(value) != value or int(value) < low:
                raise UserError(
                    f"typiclust {name} must be an integer >= {low}, got {value!r}. "
                    f"Set --set selector_options.{name}=<integer >= {low}>."
                )
        self.max_clusters, self.min_cluster_size, self.knn = (
            int(max_clusters),
            int(min_cluster_size),
            int(knn),
        )
        self.n_init, self.max_iter, self.chunk = int(n_init), int(max_iter), int(chunk)

    def cluster(
        self, ctx: SelectionContext, count: int, feats: torch.Tensor | None = None
    ) -> tuple[np.ndarray, float]:
        """(k-means label of every pool sample, inertia), K = min(|selected| + count, max_clusters, N)."""
        feats = ctx.features_tensor() if feats is None else feats
        k = max(1, min(len(ctx.selected) + int(count), self.max_clusters, ctx.pool_size))
        rng = ctx.rng()
        best: tuple[float, Any] | None = None
        for r in range(self.n_init):  # one generator: each restart draws on from where the last stopped
            _, labels, inertia = lloyd(
                feats, seed_centres(feats, k, rng, True), self.max_iter, 1e-4, self.chunk
            )
            if best is None or inertia < best[0]:
                best = (inertia, labels)
            ctx.report(r + 1, self.n_init + 1)
        assert best is not None
        return best[1].cpu().numpy().astype(np.int64), float(best[0])

    def select(self, ctx: SelectionContext, count: int) -> Selection:
        import torch

        count = min(int(count), ctx.pool_size - len(ctx.selected))
        if count <= 0:
            return Selection(np.zeros(0, dtype=np.int64), np.zeros(0), {})
        feats = ctx.features_tensor()
        labels, inertia = self.cluster(ctx, count, feats)
        order = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[order], np.arange(labels.max() + 2))

        def typ(c: int) -> tuple[np.ndarray, np.ndarray]:
            members = order[bounds[c] : bounds[c + 1]]  # ascending pool index (stable sort)
            t = typicality(feats, torch.as_tensor(members, device=feats.device), self.knn, self.chunk)
            return members, t.cpu().numpy()

        picks, scores, counters = pick_order(
            labels, typ, np.asarray(ctx.selected, dtype=np.int64), count, self.min_cluster_size
        )
        ctx.report(self.n_init + 1, self.n_init + 1)
        k = max(1, min(len(ctx.selected) + count, self.max_clusters, ctx.pool_size))
        stats = {"clusters": k, **counters, "inertia": inertia}
        return Selection(picks, scores, stats)


@hookimpl
def vecaf_bench_add_selectors() -> Mapping[str, Any]:
    return {"typiclust": TypiClust}

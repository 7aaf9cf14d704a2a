"""probcover: greedy maximum coverage of delta-balls (ProbCover).

Paper: Yehuda, Dekel, Hacohen & Weinshall, "Active Learning Through a Covering Lens",
NeurIPS 2022.

Reads: features only (the pretrained pool features, L2-normalised). No labels, model or text
(the purity that sets delta is measured against k-means pseudo-labels, not the true labels).

Picks: a directed graph with an edge i -> j whenever ||f_i - f_j|| < delta (every point covers
itself). The points covered by earlier picks (``ctx.selected``) are covered first; then, `count`
times, the point whose ball holds the most uncovered points is taken and those points are marked
covered (ties: a random order drawn from ``ctx.rng()``). The graph is symmetric, so a newly
covered point's own edges name exactly the balls whose gain drops by one: the gains are updated
incrementally and each edge is read O(1) times over the whole greedy, which runs on the host in
numpy (it is sequential, one argmax a pick: torch's per-op cost would dominate). Once every point is
covered, the rest of the picks are drawn uniformly from ``ctx.rng()`` (stats: ``random_fill``).
The score of each pick is its marginal coverage gain (0 for a random fill).

delta="auto" (the paper's rule): k-means pseudo-labels with k = ``ctx.num_classes`` (or
`clusters`); the purity of delta is the share of points whose delta-ball holds only points of
their own pseudo-label, i.e. whose distance r_x to the nearest point of another pseudo-label is
>= delta. delta is the largest multiple of `delta_step` (0.05, the paper's grid), at most 2 (the
sphere's diameter), with purity >= `purity` and an estimated edge count <= `max_edges`; when no
multiple qualifies, the largest pure-enough radius itself. r_x is computed exactly for a uniform
sample of `purity_sample` rows (every row when the pool is no larger), each against the whole
pool; the edge count is estimated from 1,000 of them. Stats: delta, purity (of the sample; None
for a given delta), coverage before and after this round's picks, edges, random_fill and, for
auto, the pseudo-label k and what bounded delta ("purity" or "max_edges").

Options:
    delta: float | "auto" = "auto" -- ball radius on the L2-normalised features.
    purity: float = 0.95 -- the paper's alpha.
    delta_step: float = 0.05 -- the grid of the auto search.
    clusters: int = 0 -- pseudo-label k-means k; 0: ctx.num_classes, or 10 when that is 0.
    kmeans_iter: int = 50 -- Lloyd iterations of the pseudo-label k-means (one k-means++ run).
    purity_sample: int = 5000 -- rows whose r_x is measured (purity's sampling error ~0.003).
    max_edges: int = 50_000_000 -- cap on the graph's edges (self-loops included; 8 bytes an
        edge, about 4x while it is built). A given delta above it is a UserError naming a smaller
        delta; auto takes a smaller delta.
    chunk: int = 0 -- rows per distance block (memory chunk x N floats, never N x N); 0: 512 on
        the CPU, 2048 on CUDA (fewer, larger products: each block's nonzero() synchronises).
    precision: "auto" | "fp32" | "bf16" = "auto" -- the graph's dot products. The graph is the
        same with each (pairs in the rounding band are recomputed), bf16 halves the matmul where
        the hardware has it but its band is ~100x wider, and each pair in it costs two row gathers.
        auto: bf16 when the graph is large (N^2 d >= 10^11), bf16 runs faster here (CUDA, or a
        CPU probe) and under 0.2% of the pairs fall in its band (estimated from 1,000 rows;
        stats: bf16_band_share); fp32 otherwise.

Cost: the graph O(N^2 d) flops over each unordered pair once (row blocks against the columns from
their first row on) plus a sort of E/2 edges; auto adds k-means O(kmeans_iter N k d) and the
sample O(S N d); the greedy O(E + B N) on the host. Memory O(E + chunk x N). Edges are decided by
the float32 (or bf16) dot and, within a bound on its rounding error around delta, recomputed (a
float32 dot of the two rows after bf16, then float64 differences): the graph is that of float64
distances, symmetric, and the same on the CPU and the GPU in either precision; so are the picks
for a given delta. N = 100k, d = 384: the graph dominates (~4 x 10^12 flops; 2 CPU cores with
AVX512-BF16 run bf16 at twice the fp32 rate).

Deviations from public code (github.com/avihu111/TypiClust, deep-al/pycls/al/prob_cover.py):
- every row is in the graph: the public code builds edges in blocks of 500 rows over
  range(N // 500), so the last N mod 500 rows (167 points on ImageNet) have no out-edges and
  never cover anything;
- edges in CSR index arrays (8 bytes an edge), not a pandas edge list with distances (20 bytes),
  and the gains updated incrementally instead of a bincount over all remaining edges per pick;
- ties between equal gains are broken in a seeded random order (the public code: lowest index;
  its comment says the paper randomises the pick);
- once the pool is covered, the remaining picks are drawn at random from ctx.rng(); the public
  code read (commit 4097a71) keeps taking the argmax of all-zero degrees, row 0 again and again;
- the public code takes delta as a given number; "auto" implements the paper's purity rule,
  measured on a sample of rows for large pools.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from vecaf_bench.api import Capabilities, Selection, SelectionContext, UserError, hookimpl
from vecaf_bench_plugins.selectors.kmeans import assign, lloyd, seed_centres

if TYPE_CHECKING:  # imported where it runs: listing plugins and argument errors need no torch
    import torch

MAX_DELTA = 2.0  # the diameter of the unit sphere: a larger ball holds every point
EDGE_ROWS = 1000  # sample rows behind the edge and band estimates
CDF_BINS = 4096  # squared distances on [0, 4] in bins of 1/1024
BF16_BAND_SHARE = 2e-3  # bf16 pays while fewer pairs than this share fall in its band (break-even ~1%)


class TooManyEdges(Exception):
    def __init__(self, edges: int, rows: int) -> None:
        super().__init__(f"more than {edges} edges after {rows} rows")
        self.edges, self.rows = edges, rows


def _band(d: int, bf16: bool = False) -> float:
    """Bound on |computed dot - exact dot| of unit rows of d dims, plus their norms' rounding: float32
    accumulation (d units of 2^-24, doubled), and in bf16 the inputs' rounding (2 x 2^-8 + 2^-16,
    by Cauchy-Schwarz) and the output's (2^-8); 3.5 x 2^-8 in all, with a margin."""
    return 4.0 * d * 2.0**-24 + 1e-6 + (3.5 * 2.0**-8 if bf16 else 0.0)


def bf16_is_faster(feats: torch.Tensor) -> bool:
    """On CUDA, yes; on the CPU, a probe: one (256 x d) @ (d x 4096) product in each precision, best
    of two (bf16 runs at twice float32's rate with AVX512-BF16 or AMX, far slower without)."""
    import time

    import torch

    if feats.device.type == "cuda":
        return True
    if feats.device.type != "cpu":
        return False
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(256, feats.shape[1], generator=gen), torch.randn(4096, feats.shape[1], generator=gen)
    took = {}
    for dtype in (torch.float32, torch.bfloat16):
        x, y = a.to(dtype), b.to(dtype)
        best = float("inf")
        for _ in range(2):
            t = time.perf_counter()
            _ = x @ y.T
            best = min(best, time.perf_counter() - t)
        took[dtype] = best
    return took[torch.bfloat16] < 0.8 * took[torch.float32]


def _flat_nonzero(mask: torch.Tensor) -> torch.Tensor:
    """Positions of a contiguous mask's True entries, ascending (numpy's is ~3x faster on the CPU)."""
    import torch

    if mask.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(mask.numpy()))
    return torch.nonzero(mask.view(-1)).squeeze(1)


def _refine(feats: torch.Tensor, r: torch.Tensor, c: torch.Tensor, thr: float, bf16: bool) -> torch.Tensor:
    """||f_r - f_c||^2 < thr for pairs inside the band: after a bf16 product, first a float32 dot
    (its own narrow band), then float64 differences for what is still undecided."""
    import torch

    d = feats.shape[1]
    keep = torch.empty(r.shape[0], dtype=torch.bool, device=feats.device)
    lo, hi = 1.0 - thr / 2 - _band(d), 1.0 - thr / 2 + _band(d)
    step = max(1, (1 << 22) // d)
    for a in range(0, r.shape[0], step):
        ra, ca = r[a : a + step], c[a : a + step]
        if bf16:
            dot = (feats[ra] * feats[ca]).sum(1)
            k, mid = dot > hi, (dot > lo) & (dot <= hi)
            ra, ca = ra[mid], ca[mid]
        diff = feats[ra].double() - feats[ca].double()
        exact = diff.pow_(2).sum(1) < thr
        if bf16:
            k[mid] = exact
            exact = k
        keep[a : a + step] = exact
    return keep


def build_graph(
    feats: torch.Tensor,
    delta: float,
    chunk: int = 512,
    max_edges: int | None = None,
    report: Any = None,
    bf16: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(indptr (N+1,), cols (E,)) int64 CSR of the symmetric graph i -> j iff ||f_i - f_j|| < delta,
    self-loops included, on feats' device; `feats`: L2-normalised rows. Every row block of `chunk`
    rows (the last one short) is compared with the columns from its first row on; each unordered
    pair is decided once (a float32 or `bf16` dot, float64 differences inside its rounding band) and
    mirrored: the graph is the same either way. Raises TooManyEdges once the count passes `max_edges`."""
    import torch

    n, d = feats.shape
    dev = feats.device
    thr = float(delta) ** 2
    band = _band(d, bf16)
    lo, hi = 1.0 - thr / 2 - band, 1.0 - thr / 2 + band  # dot > hi: an edge; dot <= lo: none
    mm = feats.to(torch.bfloat16) if bf16 else feats
    fwd_r: list[torch.Tensor] = []
    fwd_c: list[torch.Tensor] = []
    total = n  # the self-loops
    blocks = -(-n // chunk)
    cuda = torch.backends.cuda.matmul
    flags = (cuda.allow_tf32, cuda.allow_bf16_reduced_precision_reduction)
    cuda.allow_tf32 = cuda.allow_bf16_reduced_precision_reduction = False  # the band assumes fp32 sums
    try:
        for b, s in enumerate(range(0, n, chunk)):
            e = min(n, s + chunk)
            width = n - s
            dot = mm[s:e] @ mm[s:].T  # (e - s, n - s): column c is row s + c
            cand = dot > lo
            cand[:, : e - s] &= torch.ones(e - s, e - s, dtype=torch.bool, device=dev).triu_(1)  # j > i
            flat = _flat_nonzero(cand).to(dev)
            del cand
            unsure = dot.view(-1)[flat] <= hi
            del dot
            if bool(unsure.any()):
                uf = flat[unsure]
                ok = ~unsure
                ok[unsure] = _refine(feats, uf // width + s, uf % width + s, thr, bf16)
                flat = flat[ok]
            total += 2 * int(flat.shape[0])
            if max_edges is not None and total > max_edges:
                raise TooManyEdges(total, e)
            fwd_r.append(flat // width + s)
            fwd_c.append(flat % width + s)
            if report is not None:
                report(b + 1, blocks)
    finally:
        cuda.allow_tf32, cuda.allow_bf16_reduced_precision_reduction = flags
    # the pairs i < j come sorted by i, their mirrors j -> i sorted by j after one sort;
    # each row of the CSR holds [itself, its forward neighbours, its mirrored ones]
    fr, fc = torch.cat(fwd_r), torch.cat(fwd_c)
    del fwd_r, fwd_c
    nf, nm = torch.bincount(fr, minlength=n), torch.bincount(fc, minlength=n)
    indptr = torch.zeros(n + 1, dtype=torch.long, device=dev)
    indptr[1:] = torch.cumsum(nf + nm + 1, 0)
    cols = torch.empty(int(indptr[-1]), dtype=torch.long, device=dev)
    cols[indptr[:-1]] = torch.arange(n, device=dev)
    k = torch.arange(fr.shape[0], device=dev)
    cols[indptr[fr] + 1 + (k - (torch.cumsum(nf, 0) - nf)[fr])] = fc
    order = torch.sort(fc, stable=True).indices
    mr, mc = fc[order], fr[order]
    del order, fr, fc
    cols[indptr[mr] + 1 + nf[mr] + (k - (torch.cumsum(nm, 0) - nm)[mr])] = mc
    return indptr, cols


def _gather(indptr: np.ndarray, cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The concatenated neighbour lists of `rows`."""
    start = indptr[rows]
    length = indptr[rows + 1] - start
    total = int(length.sum())
    offsets = np.cumsum(length) - length
    return cols[np.repeat(start - offsets, length) + np.arange(total)]


def greedy_cover(
    indptr: np.ndarray,
    cols: np.ndarray,
    selected: np.ndarray,
    count: int,
    rng: np.random.Generator,
    report: Any = None,
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(picks, gains, points covered by `selected`, random fills): greedy maximum coverage on the
    symmetric CSR graph (host arrays), ties broken by a random priority drawn from `rng`.

    key[u] = gain(u) x N + rank(u) is unique and only ever falls; a heap holds past keys (upper
    bounds), and a popped key that is still current is the maximum: O(E + B log N) in all, with no
    O(N) argmax per pick."""
    n = len(indptr) - 1
    covered = np.zeros(n, dtype=bool)
    rank = rng.permutation(n).astype(np.int64)  # the tie-break order
    owner = np.argsort(rank)  # owner[rank[u]] = u
    key = np.diff(indptr).astype(np.int64) * n + rank  # gain: the uncovered points in u's ball

    def cover(points: np.ndarray) -> None:
        covered[points] = True
        np.subtract.at(key, _gather(indptr, cols, points), n)  # symmetric: exactly the balls holding them

    selected = np.asarray(selected, dtype=np.int64)
    if len(selected):
        cover(np.unique(_gather(indptr, cols, selected)))
    initial = int(covered.sum())
    key[selected] = -1  # never a candidate; keys only fall, so they stay negative
    heap = (-key[key >= 0]).tolist()
    heapq.heapify(heap)
    picks: list[int] = []
    gains: list[int] = []
    every = max(1, count // 100)
    while len(picks) < count and heap:
        k = -heapq.heappop(heap)
        u = int(owner[k % n])
        if key[u] != k:  # stale: push the current key back (if u is still a candidate)
            if key[u] >= 0:
                heapq.heappush(heap, -int(key[u]))
            continue
        if k < n:  # the best ball holds no uncovered point: the pool is covered
            break
        nb = cols[indptr[u] : indptr[u + 1]]
        new = nb[~covered[nb]]
        picks.append(u)
        gains.append(len(new))
        cover(new)
        key[u] = -1
        if report is not None and len(picks) % every == 0:
            report(len(picks), count)
    fill = count - len(picks)
    if fill:
        free = np.flatnonzero(key >= 0)
        picks += rng.permutation(free)[:fill].tolist()
        gains += [0] * fill
    return np.array(picks, dtype=np.int64), np.array(gains, dtype=np.float64), initial, fill


def pseudo_labels(
    feats: torch.Tensor, k: int, rng: np.random.Generator, max_iter: int, chunk: int
) -> torch.Tensor:
    """k-means labels of every row (one k-means++ run)."""
    centres, _, _ = lloyd(feats, seed_centres(feats, k, rng, True), max_iter, 1e-4, chunk)
    return assign(feats, centres, chunk)[0]


def purity_radii(feats: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor, chunk: int) -> np.ndarray:
    """r_x of each of `rows`: its distance to the nearest row of another label (inf: none)."""
    import torch

    radii = torch.empty(rows.shape[0], dtype=torch.float64, device=feats.device)
    for s in range(0, rows.shape[0], chunk):
        r = rows[s : s + chunk]
        dot = feats[r] @ feats.T
        dot.masked_fill_(labels[r][:, None] == labels[None, :], -float("inf"))
        best = dot.max(1).values.double()
        radii[s : s + chunk] = (2.0 - 2.0 * best).clamp_min_(0).sqrt_()  # unit rows: d^2 = 2 - 2 dot
    return radii.cpu().numpy()


def purity_at(radii: np.ndarray, delta: float) -> float:
    """Share of the rows whose delta-ball (||.|| < delta) is pure: r_x >= delta."""
    return float(np.mean(radii >= delta)) if len(radii) else 1.0


def pure_radius(radii: np.ndarray, purity: float) -> float:
    """The largest delta with purity_at(radii, delta) >= purity (inf when every row is alone)."""
    need = max(1, math.ceil(purity * len(radii) - 1e-9))
    return float(np.sort(radii)[::-1][need - 1])


def distance_cdf(feats: torch.Tensor, rows: torch.Tensor, chunk: int) -> np.ndarray:
    """cum[i]: pairs (r, j), r in `rows`, with ||f_r - f_j||^2 below i / 1024 (r = j included)."""
    import torch

    hist = torch.zeros(CDF_BINS, dtype=torch.float64, device=feats.device)
    for s in range(0, rows.shape[0], chunk):
        d2 = (2.0 - 2.0 * (feats[rows[s : s + chunk]] @ feats.T)).clamp_(0.0, 4.0)
        hist += torch.histc(d2, bins=CDF_BINS, min=0.0, max=4.0).double()
    return np.concatenate([[0.0], np.cumsum(hist.cpu().numpy())])


def cdf_at(cum: np.ndarray, d2: Any, up: bool = True) -> np.ndarray:
    """The cdf at squared distances d2, rounded to a bin edge upwards (or downwards)."""
    x = np.asarray(d2, dtype=np.float64) / 4.0 * CDF_BINS
    return cum[np.clip((np.ceil(x) if up else np.floor(x)).astype(int), 0, CDF_BINS)]


class ProbCover:
    capabilities = Capabilities()  # randomized: pseudo-labels, the purity sample and the tie-breaks

    def __init__(
        self,
        delta: float | str = "auto",
        purity: float = 0.95,
        delta_step: float = 0.05,
        clusters: int = 0,
        kmeans_iter: int = 50,
        purity_sample: int = 5000,
        max_edges: int = 50_000_000,
        chunk: int = 0,
        precision: str = "auto",
    ) -> None:
        self.delta: float | None = None
        if not (isinstance(delta, str) and delta.strip().lower() == "auto"):
            try:
                self.delta = float(delta)
            except (TypeError, ValueError):
                self.delta = float("nan")
            if not (math.isfinite(self.delta) and self.delta > 0):
                raise UserError(
                    f"probcover delta must be a positive number or 'auto', got {delta!r}. Set "
                    "--set selector_options.delta=auto (the paper's purity rule) or a radius such as 0.6."
                )
        if precision not in ("auto", "fp32", "bf16"):
            raise UserError(
                f"probcover precision must be auto, fp32 or bf16, got {precision!r} "
                "(the graph is exact with each)."
            )
        self.precision = precision
        if not 0.0 < float(purity) <= 1.0:
            raise UserError(f"probcover purity must be in (0, 1], got {purity!r}; the paper uses 0.95.")
        if not 0.0 < float(delta_step) <= MAX_DELTA:
            raise UserError(
                f"probcover delta_step must be in (0, 2], got {delta_step!r}; the paper uses 0.05."
            )
        for name, value, low in (
            ("clusters", clusters, 0),
            ("kmeans_iter", kmeans_iter, 1),
            ("purity_sample", purity_sample, 1),
            ("max_edges", max_edges, 1),
            ("chunk", chunk, 0),
        ):
            if isinstance(value, bool) or int(value) != value or int(value) < low:
                raise UserError(
                    f"probcover {name} must be an integer >= {low}, got {value!r}. "
                    f"Set --set selector_options.{name}=<an integer >= {low}>."
                )
        self.purity, self.delta_step = float(purity), float(delta_step)
        self.clusters, self.kmeans_iter = int(clusters), int(kmeans_iter)
        self.purity_sample, self.max_edges, self.chunk = int(purity_sample), int(max_edges), int(chunk)

    def rows_per_block(self, feats: torch.Tensor) -> int:
        return self.chunk or (2048 if feats.device.type == "cuda" else 512)

    def auto_delta(
        self, ctx: SelectionContext, feats: torch.Tensor, rng: np.random.Generator
    ) -> tuple[float, np.ndarray, tuple[np.ndarray, int], dict[str, Any]]:
        """(delta, the sample's r_x, (distance cdf, its rows), stats): the paper's purity rule under
        the edge cap."""
        import torch

        n = feats.shape[0]
        k = max(1, min(n, self.clusters or ctx.num_classes or 10))
        chunk = self.rows_per_block(feats)
        labels = pseudo_labels(feats, k, rng, self.kmeans_iter, chunk)
        rows = (
            np.sort(rng.choice(n, size=self.purity_sample, replace=False))
            if n > self.purity_sample
            else np.arange(n)
        )
        rows_t = torch.as_tensor(rows, device=feats.device)
        radii = purity_radii(feats, labels, rows_t, chunk)
        limit = min(pure_radius(radii, self.purity), MAX_DELTA)
        grid = np.round(
            self.delta_step * np.arange(1, int(math.floor(limit / self.delta_step + 1e-9)) + 1), 10
        )
        if len(grid):
            candidates = grid
        else:  # purity holds only below one step: the largest pure-enough radius (or the least positive r_x)
            positive = radii[radii > 0]
            candidates = np.array(
                [limit if limit > 0 else positive.min() if len(positive) else self.delta_step]
            )
        sub = rows_t[:: max(1, len(rows) // EDGE_ROWS)]
        cum = distance_cdf(feats, sub, chunk)
        estimate = cdf_at(cum, candidates**2) * n / len(sub)
        fits = np.flatnonzero(estimate <= self.max_edges)
        delta = float(candidates[fits[-1]] if len(fits) else candidates[0])
        bound = "purity" if len(fits) == len(candidates) else "max_edges"
        return (
            delta,
            radii,
            (cum, len(sub)),
            {
                "pseudo_classes": k,
                "purity_rows": len(rows),
                "delta_bound": bound,
                "edges_estimate": float(estimate[fits[-1]] if len(fits) else estimate[0]),
            },
        )

    def select(self, ctx: SelectionContext, count: int) -> Selection:
        import torch

        count = int(count)
        feats = ctx.features_tensor()
        n = feats.shape[0]
        rng = ctx.rng()
        stats: dict[str, Any] = {}
        radii: np.ndarray | None = None
        cdf: tuple[np.ndarray, int] | None = None
        if self.delta is None:
            delta, radii, cdf, more = self.auto_delta(ctx, feats, rng)
            stats.update(delta_rule="auto", purity_target=self.purity, **more)
        else:
            delta = self.delta
            stats.update(delta_rule="given")
        chunk = self.rows_per_block(feats)
        blocks = -(-n // chunk)
        bf16, band_share = self.precision == "bf16", None
        big = float(n) * n * feats.shape[1] >= 1e11  # a graph worth a probe (N >~ 16k at d = 384)
        if self.precision == "auto" and big and bf16_is_faster(feats):
            if cdf is None:  # fixed rows, no draw: the generator's state must not hang on the machine
                rows = np.unique(np.linspace(0, n - 1, EDGE_ROWS).astype(np.int64))
                cdf = distance_cdf(feats, torch.as_tensor(rows, device=feats.device), chunk), len(rows)
            w = 2.0 * _band(feats.shape[1], True)  # the band in squared distance
            inside = cdf_at(cdf[0], delta**2 + w) - cdf_at(cdf[0], max(delta**2 - w, 0.0), up=False)
            band_share = float(inside) / (cdf[1] * n)
            bf16 = band_share < BF16_BAND_SHARE
        while True:
            try:
                indptr, cols = build_graph(
                    feats, delta, chunk, self.max_edges, lambda b, _: ctx.report(b, blocks + count), bf16
                )
                break
            except TooManyEdges as e:
                smaller = math.floor(delta / self.delta_step - 1e-9) * self.delta_step
                if self.delta is None and smaller > 0:  # the estimate fell short: a step down
                    delta, stats["delta_bound"] = smaller, "max_edges"
                    continue
                raise UserError(
                    f"probcover delta={delta:g} gives more than max_edges={self.max_edges:,} edges "
                    f"({e.edges:,} after {e.rows:,} of {n:,} rows). Use a smaller delta "
                    f"(--set selector_options.delta={delta / 2:g}) or delta=auto, or raise "
                    "--set selector_options.max_edges=... if memory "
                    "allows (8 bytes an edge, about 4x while the graph is built)."
                ) from None
        picks, gains, initial, fill = greedy_cover(
            indptr.cpu().numpy(),
            cols.cpu().numpy(),
            np.asarray(ctx.selected),
            count,
            rng,
            lambda p, _: ctx.report(blocks + p, blocks + count),
        )
        stats.update(
            delta=float(delta),
            purity=None if radii is None else purity_at(radii, delta),
            edges=int(cols.shape[0]),
            coverage_before=initial / n,
            coverage=(initial + float(gains.sum())) / n,
            random_fill=int(fill),
            precision="bf16" if bf16 else "fp32",
        )
        if band_share is not None:
            stats["bf16_band_share"] = band_share
        return Selection(picks, gains, stats)


@hookimpl
def vecaf_bench_add_selectors() -> Mapping[str, Any]:
    return {"probcover": ProbCover}

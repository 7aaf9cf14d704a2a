"""maxherding: greedy kernel herding on the pool features, MaxHerding (Bae et al., ECCV 2024).

Paper: W. Bae, J. Noh, D. J. Sutherland, "Generalized Coverage for More Robust Low-Budget Active
Learning", ECCV 2024 (arXiv 2407.12212); public code: github.com/BorealisAI/uherding, the UHerding
repository of the same authors, which holds MaxHerding too (deep-al/pycls/al/).

Reads: features only (the pretrained pool features, L2-normalised). No labels, model or text.
Capabilities: ``randomized=False`` by default: on pools up to AUTO_ROWS = 20,000 rows every
candidate is evaluated and the seed changes nothing; above it the default ("auto") draws seeded
subsets, which the stats say (``subsampled``), so the picks then depend on the seed. True as soon
as `candidates` or `reference` is a number.

Picks: the greedy maximiser of the generalised coverage

    GCov(S) = sum_i w_i max_{s in S} k(f_i, f_s),   k(x, y) = exp(-||x - y||^2 / (2 sigma^2)),

with w_i = 1 (UHerding, in uherding.py, passes the model's uncertainty as w). The earlier picks
(``ctx.selected``) start S; each step adds the unselected candidate c of largest gain
g(c) = sum_i w_i max(0, k(f_i, f_c) - m_i), where m_i = max_{s in S} k(f_i, f_s) is kept as one
vector over the reference points i. GCov is a (weighted) facility-location function, monotone and
submodular, so a candidate's gain only falls as S grows: the greedy is run lazily (Minoux's
accelerated greedy) -- each step recomputes exactly the gains of the candidates whose stale upper
bound is highest, 16, then 32, 64, ... at a time, until the best recomputed gain beats every stale
bound (ties: the lower pool index). The picks are those of the plain greedy (up to float
rounding), at the cost of one full pass over (reference x candidates) plus some columns per pick.
The objective after each pick is kept in ``self.history`` (non-decreasing). All randomness (the
`candidates` and `reference` subsets, the "median" sample) comes from ``ctx.rng()``.

Returns a `Selection`: scores are the gains at pick time (decreasing); stats ``sigma``,
``coverage_before`` / ``coverage_after`` (GCov / sum_i w_i over the reference points, in [0, 1]),
``candidates``, ``reference`` (their numbers) and ``gain_evaluations`` (candidate gains computed).

Options:
    sigma: float | str = "paper" -- the RBF bandwidth. "paper": 1/sqrt(2), i.e. the public code's
        exp(-(d/h)^2) with its default h = 1 on unit-length features; "median": the median pairwise
        distance among (at most 2,048 seeded rows of) the reference points; "adaptive": UHerding's
        radius, h = the smallest non-zero distance between two earlier picks (distances under 1e-3
        count as zero), sigma = h/sqrt(2) ("paper" with fewer than two); or a positive number.
    candidates: int | "auto" | None = "auto" -- gains are evaluated for a seeded random subset of
        this many unselected samples (at least `count`); the selector is then randomized. None:
        every unselected sample (as the public MaxHerding, whose 35,000-candidate line is commented
        out). "auto": None up to AUTO_ROWS unselected samples, else AUTO_ROWS of them -- the first
        pass is quadratic (projected 12 h on 2 CPU cores for every one of 100,000), the subset
        bounds it near the 20,000-row time (a minute on 2 cores).
    reference: int | "auto" | None = "auto" -- the coverage is measured on a seeded random subset
        of this many pool rows (then randomized). None: the whole pool, earlier picks included.
        "auto": None up to AUTO_ROWS pool rows, else AUTO_ROWS of them.
    chunk: int = 4096 -- rows (and columns) per kernel block: memory chunk^2 floats, never N^2.

Cost: O(R C d) for the first gains (R reference points, C candidates, in chunk x chunk blocks),
then per pick O(R d) for the update of m plus O(R d) per recomputed gain (with the "paper" sigma
6% of the candidates per pick on 10,000 clustered points, 10-20% on digits: the wide kernel moves
many gains; the plain greedy recomputes all of them). Memory O(R + C + chunk^2) beyond the
features. On the selection device (GPU when there is one). The "auto" subsets keep R and C at
most 20,000, so the time stays bounded at any N; set them to None for the exact greedy on the
whole of a large pool (quadratic), or larger numbers on a GPU.

Deviations from public code: the objective and the greedy are the paper's; the public code builds
the dense (L+U) x (L+U) kernel and evaluates every gain at every step, this one is chunked and lazy
(same picks up to float rounding). sigma is the bandwidth of exp(-d^2 / (2 sigma^2)); the public
code's h is sigma * sqrt(2). Ties go to the lower pool index (torch.argmax in the public code).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from vecaf_bench.api import Capabilities, Selection, SelectionContext, UserError, hookimpl

if TYPE_CHECKING:  # imported where it runs: listing plugins and argument errors need no torch
    import torch

SIGMA_NAMES = ("paper", "median", "adaptive")
PAPER_SIGMA = 1.0 / math.sqrt(2.0)  # exp(-(d/h)^2) with h = 1, the public default
MEDIAN_SAMPLE = 2048
AUTO_ROWS = 20_000  # "auto" subsets: the whole pool up to this many rows, a seeded subset beyond
LAZY_BATCH = 16  # candidates whose gain is recomputed at once (doubling within a step)
DUPLICATE = 1e-6  # squared distances below it are two copies of one point (float32 rounding)


def parse_sigma(selector: str, sigma: Any) -> float | str:
    """The `sigma` option: one of SIGMA_NAMES or a positive finite number (text from the CLI too)."""
    if isinstance(sigma, str) and sigma.strip().lower() in SIGMA_NAMES:
        return sigma.strip().lower()
    try:
        value = float(sigma)
    except (TypeError, ValueError):
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        raise UserError(
            f"{selector} sigma must be a positive number or one of {', '.join(SIGMA_NAMES)}, got {sigma!r} "
            f"(--set selector_options.sigma=paper)."
        )
    return value


def sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances (len(a) x len(b)), clamped at 0."""
    sa, sb = (a * a).sum(1), (b * b).sum(1)
    return (sa[:, None] + sb[None, :] - 2.0 * a @ b.T).clamp_min_(0)


def min_nonzero_distance(x: torch.Tensor, chunk: int) -> float:
    """The smallest non-zero distance between two rows of x (inf with fewer than two distinct rows)."""
    import torch

    best = float("inf")
    for s in range(0, x.shape[0], chunk):
        d2 = sq_dists(x[s : s + chunk], x)
        rows = torch.arange(d2.shape[0], device=x.device)
        d2[rows, rows + s] = float("inf")  # a row and itself
        d2 = torch.where(d2 > DUPLICATE, d2, torch.full_like(d2, float("inf")))  # duplicates (float32 noise)
        best = min(best, float(d2.min()))
    return math.sqrt(best) if math.isfinite(best) else float("inf")


def resolve_sigma(
    spec: float | str,
    ref: torch.Tensor,
    earlier: torch.Tensor,
    rng: np.random.Generator,
    chunk: int,
) -> float:
    """The bandwidth for `spec` (see the module docstring)."""
    import torch

    if not isinstance(spec, str):
        return float(spec)
    if spec == "adaptive":
        h = min_nonzero_distance(earlier, chunk) if earlier.shape[0] >= 2 else float("inf")
        return h / math.sqrt(2.0) if math.isfinite(h) else PAPER_SIGMA
    if spec == "median":
        n = ref.shape[0]
        rows = np.arange(n)
        if n > MEDIAN_SAMPLE:
            rows = np.sort(rng.choice(n, size=MEDIAN_SAMPLE, replace=False))
        x = ref[torch.as_tensor(rows, device=ref.device)]
        if x.shape[0] < 2:
            return PAPER_SIGMA
        d = sq_dists(x, x).sqrt()
        upper = d[torch.triu(torch.ones_like(d, dtype=torch.bool), diagonal=1)]
        median = float(upper.median())
        return median if median > 0 else PAPER_SIGMA
    return PAPER_SIGMA


def kernel_max(ref: torch.Tensor, points: torch.Tensor, gamma: float, chunk: int) -> torch.Tensor:
    """m_i = max_s k(ref_i, points_s) in float32 (zeros when there are no points), in blocks."""
    import torch

    m = torch.zeros(ref.shape[0], dtype=torch.float32, device=ref.device)
    for s in range(0, ref.shape[0], chunk):
        r = ref[s : s + chunk]
        for t in range(0, points.shape[0], chunk):
            k = torch.exp(-gamma * sq_dists(r, points[t : t + chunk]))
            m[s : s + chunk] = torch.maximum(m[s : s + chunk], k.max(1).values)
    return m


def coverage_gains(
    ref: torch.Tensor,
    cand: torch.Tensor,
    m: torch.Tensor,
    w: torch.Tensor | None,
    gamma: float,
    chunk: int,
) -> torch.Tensor:
    """g_c = sum_i w_i max(0, k(ref_i, cand_c) - m_i) for every candidate row, float64, in blocks."""
    import torch

    g = torch.zeros(cand.shape[0], dtype=torch.float64, device=ref.device)
    for s in range(0, ref.shape[0], chunk):
        r, mr = ref[s : s + chunk], m[s : s + chunk]
        wr = None if w is None else w[s : s + chunk]
        for t in range(0, cand.shape[0], chunk):
            over = (torch.exp(-gamma * sq_dists(r, cand[t : t + chunk])) - mr[:, None]).clamp_min_(0)
            g[t : t + chunk] += (over.double() if wr is None else over.double() * wr[:, None]).sum(0)
    return g


def _refresh_set(bound: torch.Tensor, stale: torch.Tensor, size: int) -> torch.Tensor:
    """The `size` stale candidates of highest bound; at the cut, the lower indices first."""
    import torch

    sb = torch.where(stale, bound, torch.full_like(bound, -float("inf")))
    k = min(size, int(stale.sum()))
    cut = sb.topk(k).values[-1]
    above = torch.nonzero(sb > cut)[:, 0]
    level = torch.nonzero(sb == cut)[:, 0][: k - len(above)]
    return torch.cat([above, level])


def _first_max(x: torch.Tensor, mask: torch.Tensor) -> tuple[float, int]:
    """(max of x over mask, the lowest index holding it); (-inf, -1) for an empty mask."""
    import torch

    if not bool(mask.any()):
        return -float("inf"), -1
    v = torch.where(mask, x, torch.full_like(x, -float("inf")))
    top = float(v.max())
    return top, int(torch.nonzero(v == top)[0, 0])


@dataclass
class Herd:
    """What `herd` returns: positions into the candidates, their gains and the objective after each pick."""

    picks: np.ndarray
    gains: np.ndarray
    objective: list[float] = field(default_factory=list)
    evaluations: int = 0


def herd(
    ref: torch.Tensor,
    cand: torch.Tensor,
    m: torch.Tensor,
    w: torch.Tensor | None,
    gamma: float,
    count: int,
    chunk: int,
    report: Callable[[int, int], None] | None = None,
) -> Herd:
    """Lazy greedy maximisation of sum_i w_i max_s k(ref_i, s) over `count` candidate rows, starting
    from the coverage vector `m` (changed in place: it ends as the coverage of the final set)."""
    import torch

    c = cand.shape[0]
    count = min(int(count), c)
    wsum = (lambda v: float(v.double().sum())) if w is None else (lambda v: float((v.double() * w).sum()))
    bound = coverage_gains(ref, cand, m, w, gamma, chunk)  # exact now, upper bounds later
    alive = torch.ones(c, dtype=torch.bool, device=ref.device)
    picks, gains, objective = [], [], [wsum(m)]
    evaluations = c
    every = max(1, count // 100)
    for step in range(count):
        fresh = torch.zeros_like(alive) if step else alive.clone()  # the first bounds are exact
        batch = LAZY_BATCH
        while True:
            stale = alive & ~fresh
            g_f, i_f = _first_max(bound, alive & fresh)
            b_s, i_s = _first_max(bound, stale)
            if i_s < 0 or g_f > b_s or (g_f == b_s and i_f < i_s):
                break  # no stale bound can beat (or tie below) the best exact gain
            rows = _refresh_set(bound, stale, batch)
            bound[rows] = coverage_gains(ref, cand[rows], m, w, gamma, chunk)
            fresh[rows] = True
            evaluations += len(rows)
            batch *= 2  # a step that needs many refreshes gets them in few passes
        picks.append(i_f)
        gains.append(g_f)
        alive[i_f] = False
        torch.maximum(m, torch.exp(-gamma * sq_dists(ref, cand[i_f : i_f + 1]))[:, 0], out=m)
        objective.append(wsum(m))
        if (step + 1) % every == 0 and report is not None:
            report(step + 1, count)
    return Herd(np.asarray(picks, dtype=np.int64), np.asarray(gains), objective, evaluations)


def parse_rows(selector: str, option: str, value: Any) -> int | str | None:
    """The `candidates` / `reference` options: a positive count, "auto" or None (text from the CLI too)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "all")):
        return None
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = 0
    if count < 1 or isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise UserError(
            f"{selector} {option} must be a positive count, 'auto' or None (all), got {value!r} "
            f"(--set selector_options.{option}=auto)."
        )
    return count


def subset_size(spec: int | str | None, rows: int) -> int | None:
    """The subset size an option asks for on `rows` rows (None: all of them)."""
    if spec == "auto":
        return None if rows <= AUTO_ROWS else AUTO_ROWS
    return spec  # type: ignore[return-value]


def subset(rng: np.random.Generator, rows: np.ndarray, size: int | None) -> np.ndarray:
    """`rows` itself, or a seeded random subset of `size` of them (ascending)."""
    if size is None or size >= len(rows):
        return rows
    return np.sort(rng.choice(rows, size=size, replace=False))


class MaxHerding:
    capabilities = Capabilities(randomized=False)  # deterministic unless a subset is drawn (see the card)
    name = "maxherding"

    def __init__(
        self,
        sigma: float | str = "paper",
        candidates: int | str | None = "auto",
        reference: int | str | None = "auto",
        chunk: int = 4096,
    ) -> None:
        self.sigma = parse_sigma(self.name, sigma)
        self.candidates = parse_rows(self.name, "candidates", candidates)
        self.reference = parse_rows(self.name, "reference", reference)
        if int(chunk) < 1:
            raise UserError(f"{self.name} chunk must be a positive integer, got {chunk}.")
        self.chunk = int(chunk)
        if isinstance(self.candidates, int) or isinstance(self.reference, int):  # seeded subsets: seeds differ
            self.capabilities = dataclasses.replace(self.capabilities, randomized=True)
        self.history: list[float] = []

    def weights(
        self,
        ctx: SelectionContext,
        ref_rows: np.ndarray,
    ) -> tuple[torch.Tensor | None, dict[str, Any]]:
        """Per-reference-point weights w_i (None: all 1) and stats about them. UHerding overrides it."""
        return None, {}

    def pick_stats(self, ref_rows: np.ndarray, w: torch.Tensor | None, picks: np.ndarray) -> dict[str, Any]:
        """Stats about the picks' weights (UHerding's uncertainty of the picks); none here."""
        return {}

    def select(self, ctx: SelectionContext, count: int) -> Selection:
        import torch

        free = ctx.unselected()
        count = min(int(count), len(free))
        if count <= 0:
            return Selection(np.zeros(0, dtype=np.int64), scores=np.zeros(0), stats={})
        rng = ctx.rng()  # one generator, drawn in a fixed order: reference, candidates, median sample
        ref_rows = subset(rng, np.arange(ctx.pool_size, dtype=np.int64), subset_size(self.reference, ctx.pool_size))
        want = subset_size(self.candidates, len(free))
        cand_rows = subset(rng, free, None if want is None else max(want, count))
        feats = ctx.features_tensor()
        dev = feats.device
        ref = feats[torch.as_tensor(ref_rows, device=dev)]
        cand = feats[torch.as_tensor(cand_rows, device=dev)]
        earlier = feats[torch.as_tensor(np.array(ctx.selected, dtype=np.int64), device=dev)]
        sigma = resolve_sigma(self.sigma, ref, earlier, rng, self.chunk)
        gamma = 1.0 / (2.0 * sigma * sigma)
        w, wstats = self.weights(ctx, ref_rows)
        m = kernel_max(ref, earlier, gamma, self.chunk)
        result = herd(ref, cand, m, w, gamma, count, self.chunk, ctx.report)
        self.history = result.objective
        total = float(len(ref_rows)) if w is None else float(w.double().sum())
        stats = {
            "sigma": sigma,
            "coverage_before": result.objective[0] / total if total > 0 else 0.0,
            "coverage_after": result.objective[-1] / total if total > 0 else 0.0,
            "candidates": int(len(cand_rows)),
            "reference": int(len(ref_rows)),
            "subsampled": int(len(cand_rows) < len(free) or len(ref_rows) < ctx.pool_size),
            "gain_evaluations": int(result.evaluations),
            **wstats,
        }
        picks = cand_rows[result.picks]
        stats.update(self.pick_stats(ref_rows, w, picks))
        return Selection(picks, scores=result.gains, stats=stats)


@hookimpl
def vecaf_bench_add_selectors() -> Mapping[str, Any]:
    return {"maxherding": MaxHerding}

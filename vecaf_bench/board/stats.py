"""The leaderboard's statistics, as pure functions of numbers (no records, no I/O).

Each function is small enough to check by hand and says which scipy call it rests on, so that a
reviewer can recompute a board cell with a calculator or with scipy directly. The rules that
decide *which* numbers go in are in `vecaf_bench.leaderboard`'s docstring.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95


def t_halfwidth(values: Sequence[float], confidence: float = CONFIDENCE) -> float | None:
    """Half-width of the Student-t interval of the mean: t(0.975, n-1) * s / sqrt(n), s the sample
    standard deviation (ddof 1). None for n < 2: one seed says nothing about the spread."""
    from scipy import stats

    n = len(values)
    if n < 2:
        return None
    return float(stats.t.ppf(0.5 + confidence / 2, n - 1) * stats.sem(values))


def mean_ci(values: Sequence[float]) -> tuple[float | None, float | None]:
    """(mean, t half-width); (None, None) for no values."""
    if not values:
        return None, None
    return float(np.mean(values)), t_halfwidth(values)


def mean_curve(curves: Sequence[Sequence[tuple[int, float]]]) -> list[tuple[int, float, float | None, int]]:
    """(step, mean, t half-width, n) at every step any curve has, over the curves that have it."""
    steps: dict[int, list[float]] = {}
    for c in curves:
        for s, v in c:
            steps.setdefault(int(s), []).append(float(v))
    return [(s, float(np.mean(v)), t_halfwidth(v), len(v)) for s, v in sorted(steps.items())]


def first_crossing(curve: Iterable[tuple[int, float]], target: float) -> float | None:
    """The step at which CURVE first reaches TARGET, linearly interpolated between the two
    evaluations around the crossing: with (s0, a0) the last evaluation below the target and (s1, a1)
    the first at or above it, s0 + (target - a0) / (a1 - a0) * (s1 - s0). The accuracy before the first
    evaluation is unknown, so a curve whose first evaluation already reaches the target crosses at
    that evaluation's step (no extrapolation towards step 0). None when no evaluation reaches it.

    Interpolation removes the `eval_every` grid from the measure: without it a run that crosses just
    after an evaluation is charged the whole gap, and the speed-up is capped at T / eval_every."""
    prev: tuple[int, float] | None = None
    for step, acc in sorted(curve):
        if acc >= target:
            if prev is None:
                return float(step)
            s0, a0 = prev
            return float(s0 + (target - a0) / (acc - a0) * (step - s0))
        prev = (step, acc)
    return None


def best_point(
    decision: Sequence[tuple[int, float]], test: Sequence[tuple[int, float]]
) -> tuple[int, float, float | None] | None:
    """(step, decision accuracy, test accuracy there) at the evaluation with the highest decision
    accuracy, the first of ties (what early stopping on the validation split keeps). None for an
    empty decision curve; the test accuracy is None when the test curve has no point at that step."""
    if not decision:
        return None
    step, acc = max(sorted(decision), key=lambda p: p[1])  # max keeps the first of ties
    return int(step), float(acc), dict(test).get(step)


@dataclass(frozen=True)
class Paired:
    """A paired difference (a - b) over the seeds both have."""

    seeds: tuple[int, ...]
    mean: float
    low: float | None  # the paired 95% t interval (None: one shared seed, or every difference equal)
    high: float | None
    p: float | None  # Wilcoxon signed-rank, two-sided (None: < 2 shared seeds or every difference 0)

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def excludes_zero(self) -> bool:
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)


def paired_difference(a: Mapping[int, float], b: Mapping[int, float]) -> Paired | None:
    """A[seed] - B[seed] over the shared seeds: mean, the paired t interval (scipy.stats.ttest_rel's
    confidence_interval, i.e. mean +- t(0.975, n-1) * sd / sqrt(n) of the differences) and the
    two-sided Wilcoxon signed-rank p (scipy.stats.wilcoxon with its defaults: zero differences
    dropped, the exact distribution for small n). None when no seed is shared.

    Pairing is what seeds are for here: a seed fixes the head init and the augmentation stream
    for every method, so the seed-to-seed noise they share cancels in the difference. With n
    seeds the smallest exact two-sided Wilcoxon p is 2 / 2**n (0.0625 for 5 seeds)."""
    from scipy import stats

    seeds = tuple(sorted(set(a) & set(b)))
    if not seeds:
        return None
    x = np.array([a[s] for s in seeds], dtype=float)
    y = np.array([b[s] for s in seeds], dtype=float)
    d = x - y
    mean = float(d.mean())
    low = high = None
    if len(seeds) >= 2 and not np.allclose(d, d[0]):  # no spread: no interval (scipy's is nan)
        ci = stats.ttest_rel(x, y).confidence_interval(CONFIDENCE)
        low, high = float(ci.low), float(ci.high)
    p = None
    if len(seeds) >= 2 and np.any(d != 0):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy warns about ties/zeros for tiny n; the p stands
            p = float(stats.wilcoxon(x, y).pvalue)
    return Paired(seeds, mean, low, high, p)


def ratio_ci(num: Sequence[float], den: Sequence[float]) -> tuple[float, float | None, float | None]:
    """mean(NUM) / mean(DEN) with a 95% interval by the delta method on the log ratio: the log of
    each mean has variance about s^2 / (n * mean^2) (its squared coefficient of variation over n), so
    log R +- t(0.975, min(n_num, n_den) - 1) * sqrt(cv_num^2 / n_num + cv_den^2 / n_den), then exp.
    The interval is multiplicative (always positive, asymmetric around R) and uses the smaller
    sample's dof, which errs on the wide side. No interval when either side has < 2 values."""
    from scipy import stats

    ratio = float(np.mean(num) / np.mean(den))
    n = min(len(num), len(den))
    if n < 2:
        return ratio, None, None
    rel = sum(float(np.var(v, ddof=1)) / (len(v) * float(np.mean(v)) ** 2) for v in (num, den))
    h = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * math.sqrt(rel)
    return ratio, ratio * math.exp(-h), ratio * math.exp(h)


def aubc(budgets: Sequence[float], accuracies: Sequence[float]) -> float:
    """Area under the budget curve: the trapezoid area under ACCURACIES vs BUDGETS (images),
    divided by the budget range, i.e. the curve's mean height in accuracy points
    (scipy.integrate.trapezoid / (max - min)). Needs at least two distinct budgets."""
    from scipy.integrate import trapezoid

    order = np.argsort(budgets)
    x = np.asarray(budgets, dtype=float)[order]
    y = np.asarray(accuracies, dtype=float)[order]
    if len(x) < 2 or x[-1] == x[0]:
        raise ValueError("AUBC needs at least two distinct label budgets")
    return float(trapezoid(y, x) / (x[-1] - x[0]))

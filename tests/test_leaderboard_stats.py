"""The leaderboard's statistics (vecaf_bench.board.stats) against hand computations and against
scipy's own calls, on numbers small enough to check with a pencil."""

import math

import numpy as np
import pytest
from scipy import integrate, stats

from vecaf_bench.board import stats as bs

T_975_DOF2 = 4.302652729911275  # Student t quantiles from a table: t(0.975, 2), t(0.975, 4)
T_975_DOF4 = 2.7764451051977987


def test_first_crossing_interpolates_between_the_two_evaluations_around_it():
    curve = [(10, 50.0), (20, 70.0), (30, 90.0), (40, 95.0)]
    # 80 lies between 70 @20 and 90 @30: 20 + (80 - 70) / (90 - 70) * 10 = 25
    assert bs.first_crossing(curve, 80.0) == pytest.approx(25.0)
    assert bs.first_crossing(curve, 70.0) == pytest.approx(20.0)  # reached exactly at an evaluation
    assert bs.first_crossing(curve, 92.0) == pytest.approx(30 + 2 / 5 * 10)
    assert bs.first_crossing(curve, 96.0) is None  # never reached
    # the first evaluation already at or above the target: its step, no extrapolation towards 0
    assert bs.first_crossing(curve, 40.0) == 10.0
    # the *first* crossing: a curve that dips back below and crosses again counts once, the first time
    assert bs.first_crossing([(10, 60.0), (20, 80.0), (30, 70.0), (40, 85.0)], 75.0) == pytest.approx(17.5)
    assert bs.first_crossing([(20, 80.0), (10, 60.0)], 70.0) == pytest.approx(15.0)  # order does not matter


def test_best_point_is_the_first_of_ties_and_reports_the_test_accuracy_there():
    val = [(10, 60.0), (20, 80.0), (30, 80.0), (40, 75.0)]
    test = [(10, 58.0), (20, 77.0), (30, 81.0), (40, 79.0)]
    assert bs.best_point(val, test) == (20, 80.0, 77.0)
    assert bs.best_point([], test) is None


def test_mean_ci_is_the_student_t_interval():
    mean, half = bs.mean_ci([86.0, 84.0, 88.0])
    assert mean == pytest.approx(86.0) and half == pytest.approx(T_975_DOF2 * 2 / math.sqrt(3))
    assert bs.mean_ci([70.0]) == (70.0, None) and bs.mean_ci([]) == (None, None)


def test_paired_interval_and_wilcoxon_by_hand():
    a = {0: 86.0, 1: 84.0, 2: 88.0, 7: 99.0}
    b = {0: 80.0, 1: 83.0, 2: 79.0, 5: 10.0}
    p = bs.paired_difference(a, b)
    # shared seeds 0, 1, 2; differences 6, 1, 9: mean 16/3, sd sqrt(((2/3)^2 + (13/3)^2 + (11/3)^2) / 2)
    sd = math.sqrt(((6 - 16 / 3) ** 2 + (1 - 16 / 3) ** 2 + (9 - 16 / 3) ** 2) / 2)
    assert p.seeds == (0, 1, 2) and p.n == 3 and p.mean == pytest.approx(16 / 3)
    assert p.low == pytest.approx(16 / 3 - T_975_DOF2 * sd / math.sqrt(3))
    assert p.high == pytest.approx(16 / 3 + T_975_DOF2 * sd / math.sqrt(3))
    assert not p.excludes_zero  # [-4.7, 15.4]
    # the exact signed-rank p for 3 positive differences: P(W+ = 6) twice over 2^3 sign patterns
    assert p.p == pytest.approx(2 / 8)


def test_paired_matches_scipys_own_calls():
    rng = np.random.default_rng(3)
    x, y = rng.normal(80, 2, 5), rng.normal(78, 2, 5)
    p = bs.paired_difference(dict(enumerate(x)), dict(enumerate(y)))
    ci = stats.ttest_rel(x, y).confidence_interval(0.95)
    assert (p.low, p.high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    d = x - y
    half = T_975_DOF4 * np.std(d, ddof=1) / math.sqrt(5)
    assert (p.low, p.high) == (pytest.approx(d.mean() - half), pytest.approx(d.mean() + half))
    assert p.p == pytest.approx(stats.wilcoxon(x, y).pvalue)


def test_five_seeds_all_better_give_the_smallest_wilcoxon_p():
    a = {s: 90.0 + s for s in range(5)}
    b = {s: 85.0 + 0.5 * s for s in range(5)}  # differences 5, 5.5, 6, 6.5, 7: all positive
    p = bs.paired_difference(a, b)
    assert p.p == pytest.approx(0.0625) and p.p == pytest.approx(2 / 2**5)  # never below 0.05 with 5 seeds
    assert p.excludes_zero  # while the t interval can exclude 0


def test_paired_edge_cases():
    assert bs.paired_difference({0: 1.0}, {1: 2.0}) is None  # no shared seed
    one = bs.paired_difference({0: 81.0}, {0: 80.0})
    assert one.mean == 1.0 and one.low is None and one.p is None  # one seed: no interval, no p
    zeros = bs.paired_difference({0: 80.0, 1: 81.0}, {0: 80.0, 1: 81.0})
    assert zeros.mean == 0.0 and zeros.p is None  # all differences 0: no Wilcoxon p
    flat = bs.paired_difference({0: 85.0, 1: 86.0}, {0: 80.0, 1: 81.0})
    assert flat.mean == 5.0 and flat.low is None and not flat.excludes_zero  # no spread: no interval


def test_ratio_ci_is_the_delta_method_on_the_log_ratio():
    full, row = [100.0, 120.0, 110.0], [40.0, 50.0, 45.0]
    r, lo, hi = bs.ratio_ci(full, row)
    assert r == pytest.approx(110 / 45)
    cv2 = np.var(full, ddof=1) / (3 * 110**2) + np.var(row, ddof=1) / (3 * 45**2)
    h = T_975_DOF2 * math.sqrt(cv2)
    assert lo == pytest.approx(110 / 45 * math.exp(-h)) and hi == pytest.approx(110 / 45 * math.exp(h))
    assert bs.ratio_ci([100.0], [50.0, 52.0]) == (pytest.approx(100 / 51), None, None)


def test_aubc_is_the_normalised_trapezoid():
    # budgets 10, 30, 50; accuracies 60, 80, 85: ((60 + 80) / 2 * 20 + (80 + 85) / 2 * 20) / 40 = 76.25
    assert bs.aubc([10, 30, 50], [60.0, 80.0, 85.0]) == pytest.approx(76.25)
    assert bs.aubc([50, 10, 30], [85.0, 60.0, 80.0]) == pytest.approx(76.25)  # any order
    assert bs.aubc([10, 30], [60.0, 80.0]) == pytest.approx(integrate.trapezoid([60, 80], [10, 30]) / 20)
    with pytest.raises(ValueError):
        bs.aubc([10], [60.0])


def test_mean_curve_over_the_curves_that_have_a_step():
    mc = bs.mean_curve([[(10, 50.0), (20, 60.0)], [(10, 54.0)]])
    assert mc[0][:2] == (10, 52.0) and mc[0][3] == 2 and mc[1] == (20, 60.0, None, 1)

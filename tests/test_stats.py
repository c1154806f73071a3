"""Statistics against hand-computed values."""

from __future__ import annotations

import math

import pytest

from robustbench_ofa.stats import mcnemar, paired_mcnemar, two_proportion_test, wilson_interval


def test_wilson_8_of_10():
    # p = 0.8, z^2/n = 0.38416: centre = (0.8 + 0.19208) / 1.38416 = 0.716796;
    # half = 1.96 * sqrt(0.016 + 0.009604) / 1.38416 = 0.226581.
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.490157, abs=1e-6)
    assert hi == pytest.approx(0.943319, abs=1e-6)


def test_wilson_extremes_and_empty():
    # k = 0: upper bound (z^2/n) / (1 + z^2/n) = 0.38416 / 1.38416.
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.38416 / 1.38416)
    lo, hi = wilson_interval(10, 10)
    assert lo == pytest.approx(1 - 0.38416 / 1.38416) and hi == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_wilson_z_changes_width():
    narrow = wilson_interval(50, 100, z=1.0)
    wide = wilson_interval(50, 100, z=2.576)
    assert wide[0] < narrow[0] < 0.5 < narrow[1] < wide[1]


def test_mcnemar_exact_hand_computed():
    # X ~ Bin(10, 1/2): P(X <= 1) = (1 + 10) / 1024; two-sided p = 22 / 1024 = 0.021484375.
    assert mcnemar(1, 9) == pytest.approx(22 / 1024)
    assert mcnemar(9, 1) == pytest.approx(22 / 1024)
    assert mcnemar(5, 5) == 1.0
    assert mcnemar(0, 0) == 1.0
    # b = 0, c = 3: 2 * (1/8) = 0.25.
    assert mcnemar(0, 3) == pytest.approx(0.25)


def test_mcnemar_chi2_with_continuity_correction():
    # (|1 - 9| - 1)^2 / 10 = 4.9; chi2(1) survival = erfc(sqrt(4.9 / 2)) = 0.0268567.
    assert mcnemar(1, 9, exact=False) == pytest.approx(math.erfc(math.sqrt(2.45)))
    assert mcnemar(1, 9, exact=False) == pytest.approx(0.0268567, abs=1e-7)
    assert mcnemar(3, 4, exact=False) == 1.0  # |b - c| - 1 = 0
    with pytest.raises(ValueError):
        mcnemar(-1, 2)


def test_paired_mcnemar_counts():
    a = [True, True, True, False, False, True]
    b = [True, False, False, True, False, True]
    result = paired_mcnemar(a, b)
    assert (result.n, result.both, result.b, result.c, result.neither) == (6, 2, 2, 1, 1)
    # Bin(3, 1/2): P(X <= 1) = 4 / 8; two-sided 1.0.
    assert result.p_value == 1.0
    strong = paired_mcnemar([True] * 9 + [False], [False] * 9 + [True])
    assert (strong.b, strong.c) == (9, 1) and strong.p_value == pytest.approx(22 / 1024)
    with pytest.raises(ValueError):
        paired_mcnemar([True], [True, False])


def test_two_proportion_test_hand_computed():
    # 45/100 vs 30/100: pooled 0.375, se = sqrt(0.375 * 0.625 * 0.02) = 0.0684653,
    # z = 0.15 / 0.0684653 = 2.190890, p = erfc(z / sqrt 2) = 0.0284597.
    assert two_proportion_test(45, 100, 30, 100) == pytest.approx(0.0284597, abs=1e-6)
    assert two_proportion_test(30, 100, 45, 100) == pytest.approx(0.0284597, abs=1e-6)
    assert two_proportion_test(5, 10, 50, 100) == pytest.approx(1.0)
    assert two_proportion_test(0, 10, 0, 20) == 1.0
    assert two_proportion_test(10, 10, 20, 20) == 1.0
    with pytest.raises(ValueError):
        two_proportion_test(1, 0, 1, 2)
    with pytest.raises(ValueError):
        two_proportion_test(3, 2, 1, 2)

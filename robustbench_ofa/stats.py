"""Small, exact statistics for comparing accuracies: confidence intervals and significance tests.

Benchmarks here compare models on the same samples (clean vs attacked, prompt-tuned vs finetuned), so the
paired McNemar test is the right tool there; the two-proportion z-test is for independent samples, such
as a new run against a stored baseline in regression gates. Wilson intervals behave at 0 % and 100 %,
where the normal approximation collapses to a zero-width interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy.stats import binom


def _check_count(k: int, n: int, name: str = "k") -> None:
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"expected 0 <= {name} <= n, got {name}={k}, n={n}")


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a proportion k/n (z = 1.96 for 95 %); (0, 1) when n = 0."""
    _check_count(k, n)
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def mcnemar(b: int, c: int, exact: bool = True) -> float:
    """Two-sided McNemar p-value from the discordant counts b and c.

    ``exact=True`` (default): the exact binomial test, p = min(1, 2 * P(X <= min(b, c))) with
    X ~ Binomial(b + c, 1/2) (not the mid-p variant). ``exact=False``: the chi-square approximation
    with continuity correction, (|b - c| - 1)^2 / (b + c) on 1 degree of freedom. No discordant pairs
    gives p = 1.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be non-negative, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    if exact:
        return float(min(1.0, 2.0 * binom.cdf(min(b, c), n, 0.5)))
    stat = max(abs(b - c) - 1, 0) ** 2 / n
    # chi-square survival function with 1 degree of freedom.
    return float(math.erfc(math.sqrt(stat / 2.0)))


@dataclass
class McNemarResult:
    """Paired comparison of two systems on the same samples.

    ``b``: samples A got right and B got wrong; ``c``: A wrong, B right; ``both``/``neither`` the rest.
    """

    n: int
    both: int
    b: int
    c: int
    neither: int
    p_value: float


def paired_mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool], exact: bool = True) -> McNemarResult:
    """McNemar's test on per-sample correctness of systems A and B over the same samples."""
    if len(correct_a) != len(correct_b):
        raise ValueError(f"paired test needs equal lengths, got {len(correct_a)} and {len(correct_b)}")
    both = b = c = neither = 0
    for a_ok, b_ok in zip(correct_a, correct_b):
        a_ok, b_ok = bool(a_ok), bool(b_ok)
        if a_ok and b_ok:
            both += 1
        elif a_ok:
            b += 1
        elif b_ok:
            c += 1
        else:
            neither += 1
    return McNemarResult(
        n=len(correct_a), both=both, b=b, c=c, neither=neither, p_value=mcnemar(b, c, exact=exact)
    )


def two_proportion_test(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided pooled z-test p-value for k1/n1 vs k2/n2 (independent samples).

    z = (p1 - p2) / sqrt(p (1 - p) (1/n1 + 1/n2)) with the pooled p = (k1 + k2) / (n1 + n2). When the
    pooled proportion is 0 or 1 the two samples agree exactly and p = 1.
    """
    _check_count(k1, n1, "k1")
    _check_count(k2, n2, "k2")
    if n1 == 0 or n2 == 0:
        raise ValueError(f"both samples need at least one trial, got n1={n1}, n2={n2}")
    pooled = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    z = (k1 / n1 - k2 / n2) / se
    return float(math.erfc(abs(z) / math.sqrt(2.0)))

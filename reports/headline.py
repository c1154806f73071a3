"""Headline sentences written from paired comparisons, never by hand.

Two variants are scored on the same samples, so the comparison is paired: significance comes from the
exact McNemar test on the discordant samples (``robustbench_ofa.stats``), and the interval of the
difference in accuracy is Newcombe's hybrid score interval for paired proportions (Newcombe 1998,
Statistics in Medicine 17:2635, method 10), with the continuity-corrected phi of Newcombe and Altman
(Statistics with Confidence, 2000; the default of R's MKinfer::binomDiffCI for paired data). It combines
the Wilson intervals of the two accuracies with the correlation of the 2x2 table, so unlike the paired
Wald interval it stays inside [-1, 1] and does not collapse to zero width when no sample is discordant
(the uncorrected phi of 1 would). The interval and the test can disagree at the margin (an interval that
just excludes 0 with p slightly above 0.05); the sentence follows the test, whose p-value it prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from robustbench_ofa.stats import wilson_interval

#: Significance level of the headline sentences (two-sided, not corrected for multiple comparisons).
ALPHA = 0.05

def attack_name(name: str) -> str:
    """How an attack is printed in sentences and tables: its registered display name (``AttackSpec.display``);
    a name no longer registered (an old results file) prints as stored."""
    from attacks import ATTACKS

    return ATTACKS.get(name).display if name in ATTACKS else name


def paired_diff_ci(both: int, only_a: int, only_b: int, neither: int,
                   z: float = 1.959964) -> tuple[float, float]:
    """95 % interval of acc(A) - acc(B) from a paired 2x2 table (Newcombe's method 10).

    ``only_a``: samples A got right and B wrong; ``only_b`` the reverse. Returns (low, high) in [-1, 1];
    (-1, 1) for an empty table.
    """
    n = both + only_a + only_b + neither
    if min(both, only_a, only_b, neither) < 0:
        raise ValueError("paired counts must be non-negative")
    if n == 0:
        return (-1.0, 1.0)
    k1, k2 = both + only_a, both + only_b
    p1, p2 = k1 / n, k2 / n
    l1, u1 = wilson_interval(k1, n, z)
    l2, u2 = wilson_interval(k2, n, z)
    denom = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    cross = both * neither - only_a * only_b
    if cross > 0:  # continuity-corrected phi: a positive correlation is shrunk by n/2
        cross = max(cross - n / 2, 0.0)
    phi = cross / math.sqrt(denom) if denom > 0 else 0.0
    d = p1 - p2
    delta = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    eps = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return (max(-1.0, d - delta), min(1.0, d + eps))


def fmt_points(x: float) -> str:
    """A difference of proportions in percentage points with its sign: 0.123 -> '+12.3'."""
    v = round(100 * x, 1)
    if v == 0:
        return "0.0"
    return f"{v:+.1f}".replace("-", "\u2212")


def fmt_p(p: float) -> str:
    """'p < 0.001', 'p = 0.002', 'p = 0.41', 'p = 1'."""
    if p != p:
        return "p = n/a"
    if p < 0.001:
        return "p < 0.001"
    if p < 0.01:
        return f"p = {p:.3f}"
    if p >= 0.995:
        return "p = 1"
    return f"p = {p:.2f}"


@dataclass(frozen=True)
class Comparison:
    """Variant ``subject`` against ``reference`` on one task and threat: the paired 2x2 counts."""

    task: str
    threat: str          # "clean" or e.g. "PGD at 4/255"
    subject: str
    reference: str
    both: int             # samples both got right
    only_subject: int     # the subject right, the reference wrong
    only_reference: int
    neither: int
    p_value: float

    @classmethod
    def from_paired(cls, row: dict, subject: str, threat: str) -> Comparison:
        """From a row of ``aggregate.paired_tests`` (variant_a/b, n, acc_a, only_a, only_b, p_value)."""
        n = int(row["n"])
        flip = row["variant_a"] != subject
        only_s, only_r = (int(row["only_b"]), int(row["only_a"])) if flip else (int(row["only_a"]), int(row["only_b"]))
        both = int(round(float(row["acc_a"]) * n)) - int(row["only_a"]) if n else 0
        ref = row["variant_a"] if flip else row["variant_b"]
        return cls(task=row["task"], threat=threat, subject=subject, reference=ref, both=max(both, 0),
                   only_subject=only_s, only_reference=only_r, neither=max(n - both - only_s - only_r, 0),
                   p_value=float(row["p_value"]))

    @property
    def n(self) -> int:
        return self.both + self.only_subject + self.only_reference + self.neither

    @property
    def acc_subject(self) -> float:
        return (self.both + self.only_subject) / self.n if self.n else math.nan

    @property
    def acc_reference(self) -> float:
        return (self.both + self.only_reference) / self.n if self.n else math.nan

    @property
    def diff(self) -> float:
        return (self.only_subject - self.only_reference) / self.n if self.n else 0.0

    @property
    def ci(self) -> tuple[float, float]:
        return paired_diff_ci(self.both, self.only_subject, self.only_reference, self.neither)

    @property
    def significant(self) -> bool:
        return self.p_value < ALPHA and self.diff != 0

    @property
    def verdict(self) -> str:
        """'better', 'worse' or 'ns' (no significant difference) for the subject."""
        if not self.significant:
            return "ns"
        return "better" if self.diff > 0 else "worse"

    def interval_text(self) -> str:
        lo, hi = self.ci
        return f"95% CI {fmt_points(lo)} to {fmt_points(hi)}"

    def sentence(self) -> str:
        """One plain sentence stating the direction, size, interval and p-value of the difference."""
        clean = self.threat == "clean"
        where = "on clean inputs" if clean else f"under {self.threat}"
        quality = "accurate" if clean else "robust"
        if self.significant:
            winner, loser = (self.subject, self.reference) if self.diff > 0 else (self.reference, self.subject)
            lo, hi = self.ci
            if self.diff < 0:
                lo, hi = -hi, -lo
            return (f"{winner} is more {quality} than {loser} {where}: {fmt_points(abs(self.diff))} points "
                    f"(95% CI {fmt_points(lo)} to {fmt_points(hi)}), {fmt_p(self.p_value)}.")
        return (f"No significant difference between {self.subject} and {self.reference} {where}: "
                f"{fmt_points(self.diff)} points for {self.subject} ({self.interval_text()}), "
                f"{fmt_p(self.p_value)}.")

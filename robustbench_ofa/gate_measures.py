"""What a fixed-weight gate compares beyond correctness: each attacked sample's gradient evaluations, queries
and perturbation norms, and the large-eps check's counts.

Why: a number gated only by which samples are right cannot see an attack that got weaker where a stronger
one in the same cascade fools the same samples (FGSM at half its step, PGD-margin with another loss), nor
a change in how much work an attack does. On the baseline's weights the evaluation is deterministic up to
float rounding, so these measures are exact (counts) or equal within float tolerance (norms), sample by
sample: a sample "moved" when it was attacked in only one of the two runs, when its gradient evaluations
or queries differ, or when a norm differs by more than the tolerance below. Like a flipped sample, a moved
sample is allowed only as a margin for float noise (``allow_flips`` per measured key).

Measured keys are ``variant|task|norm|eps_label|attack`` (the rows the attack itself attacked, status
``attacked``); checks are ``variant|task|name``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from robustbench_ofa.bitsets import decode_bits, encode_bits

#: Integer measures (exact on fixed weights) and float ones (within tolerance), per attacked sample.
INT_MEASURES = ("grad_evals", "queries")
FLOAT_MEASURES = ("linf", "l2")
#: Float tolerance of a norm: |a - b| <= NORM_ATOL + NORM_RTOL * max(|a|, |b|). Stored norms keep 6
#: significant digits (relative rounding 5e-7). Other kernels move an L-inf PGD perturbation's L2 norm: the
#: sign of a gradient component near 0 flips, and that pixel's steps go the other way. Measured on the code
#: gate, AVX2 with 1 thread against the most portable kernels (ci_portable's settings): 14 of 2,120
#: attacked samples moved, by at most 0.72 % (L-inf norms: none), so 2 % allows 2.8 times that; FGSM at
#: half its step moves every norm by 50 % (measurements/ci-gates-2026-12-07.md).
NORM_RTOL = 2e-2
NORM_ATOL = 1e-6
#: Checks gated as counts on fixed weights: the large-eps check's robust accuracy times its sample count.
CHECKS = ("large_eps_robust_acc", "large_eps_n")


def _round(x: float) -> float:
    return float(f"{float(x):.6g}")


def measures_from_rows(res: pd.DataFrame, uids: dict[str, list[str]]) -> dict:
    """Per attack key: which of the task's samples it attacked (hex bitset over ``uids[task]``) and, in that
    order, each one's integer measures and rounded norms."""
    out: dict[str, dict] = {}
    if not len(res):
        return out
    attacked = res[res.status == "attacked"]
    for (variant, task, norm, label, attack), g in attacked.groupby(
            ["variant", "task", "norm", "eps_label", "attack"], sort=True):
        order = uids.get(task)
        if order is None:
            continue
        by_uid = {str(r.uid): r for r in g.itertuples()}
        present = [u for u in order if u in by_uid]
        entry: dict = {"present": encode_bits([u in by_uid for u in order])}
        for name in INT_MEASURES:
            entry[name] = [int(getattr(by_uid[u], name) or 0) for u in present]
        for name in FLOAT_MEASURES:
            entry[name] = [_round(getattr(by_uid[u], name) or 0.0) for u in present]
        out[f"{variant}|{task}|{norm}|{label}|{attack}"] = entry
    return out


def checks_from_rows(checks: pd.DataFrame) -> dict[str, float]:
    """The gated checks (``CHECKS``) of a run, keyed ``variant|task|name``."""
    if not len(checks):
        return {}
    rows = checks[checks["name"].isin(CHECKS)]
    return {f"{r.variant}|{r.task}|{r.name}": _round(r.value) for r in rows.itertuples()}


def decode(entry: dict, order: Sequence[str]) -> dict[str, tuple]:
    """uid -> (grad_evals, queries, linf, l2) of one measured key."""
    present = [u for u, b in zip(order, decode_bits(entry["present"], len(order))) if b]
    names = (*INT_MEASURES, *FLOAT_MEASURES)
    for name in names:
        if len(entry[name]) != len(present):
            raise ValueError(f"'{name}' holds {len(entry[name])} values for {len(present)} attacked samples")
    return {u: tuple(entry[name][i] for name in names) for i, u in enumerate(present)}


def _norm_differs(a: float, b: float) -> bool:
    return abs(a - b) > NORM_ATOL + NORM_RTOL * max(abs(a), abs(b))


def why_moved(a: tuple | None, b: tuple | None) -> str | None:
    """Why one sample's measures differ between baseline ``a`` and run ``b`` (None: they agree)."""
    if a is None or b is None:
        return "attacked in the baseline only" if b is None else "attacked in the run only"
    names = (*INT_MEASURES, *FLOAT_MEASURES)
    for i, name in enumerate(names):
        x, y = a[i], b[i]
        if (name in INT_MEASURES and x != y) or (name in FLOAT_MEASURES and _norm_differs(x, y)):
            return f"{name} {x:g} -> {y:g}"
    return None


@dataclass
class MeasureRow:
    """One measured key (or check) of a fixed-weight gate."""

    key: str
    kind: str  # "measure" or "check"
    compared: int
    moved: int
    status: str
    #: (uid, why) of each moved sample (measures) or the one-line change (checks).
    details: list[tuple[str, str]] = field(default_factory=list)


def compare_measures(base: dict, run: dict, uids: dict[str, list[str]], keys: Sequence[str],
                     allow: int) -> list[MeasureRow]:
    """Per measured key of ``keys`` (both runs hold it): the samples that moved; CHANGED beyond ``allow``."""
    rows = []
    for key in keys:
        order = uids[key.split("|")[1]]
        a, b = decode(base[key], order), decode(run[key], order)
        details = []
        for uid in order:
            if uid in a or uid in b:
                why = why_moved(a.get(uid), b.get(uid))
                if why:
                    details.append((uid, why))
        rows.append(MeasureRow(key, "measure", len(set(a) | set(b)), len(details),
                               "CHANGED" if len(details) > allow else "ok", details))
    return rows


def compare_checks(base: dict[str, float], run: dict[str, float], keys: Sequence[str], allow: int) -> list[MeasureRow]:
    """The large-eps check per variant and task: its sample count must agree and its robust count move by at
    most ``allow`` (a count, like a number's flips)."""
    rows = []
    groups = sorted({k.rsplit("|", 1)[0] for k in keys})
    for g in groups:
        na, nb = base.get(f"{g}|large_eps_n"), run.get(f"{g}|large_eps_n")
        aa, ab = base.get(f"{g}|large_eps_robust_acc"), run.get(f"{g}|large_eps_robust_acc")
        if aa is None or ab is None:
            continue
        ka, kb = round(aa * (na or 0)), round(ab * (nb or 0))
        moved = abs(ka - kb) if na == nb else max(ka, kb, 1)
        detail = f"large-eps check: {ka}/{int(na or 0)} robust in the baseline, {kb}/{int(nb or 0)} in the run"
        rows.append(MeasureRow(f"{g}|large_eps", "check", int(nb or 0), moved,
                               "CHANGED" if moved > allow or na != nb else "ok", [("", detail)] if moved else []))
    return rows

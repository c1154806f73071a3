"""Regression gates for robustness numbers: a stored baseline against a new run, sample by sample.

A baseline is JSON: provenance (settings, package versions, model and data hashes), counts k/n for every
clean and worst-case robust accuracy of every variant, task and threat model, each variant's weight
SHA-256 and, per number, which samples were correct (``samples``: the sorted uids of each task, and per
number a hex bitset over them, one line per number). Two runs are only compared when they measured the
same thing (same variants, tasks, data, attacks, budgets and samples).

Which test, per number, depends on what changed (``mode`` of each row):

* ``fixed``: the variant's weights are the baseline's (SHA-256 equal). Evaluation is deterministic up to
  float noise, so every sample that turned wrong is a real change of behaviour: the number regresses when
  more than ``allow_flips`` of its samples turned wrong, and the gate fails when more than
  ``allow_flips_total`` did over all fixed-weight numbers. The same limits hold for samples turned right
  (status ``CHANGED``, failing): on the same weights a rise is a weaker attack or a lenient metric. The
  allowances are a margin for cross-device float noise (see README, "Regression gates").
* ``paired``: the weights differ (a retrained model). McNemar's exact one-sided test per number on its
  discordant samples (lost ``b``: baseline-correct, now wrong; gained ``c``), with Holm's step-down
  correction over the numbers at ``alpha / 2`` (family-wise: one false alarm fails CI, whichever number it
  is; Holm needs no independence between numbers, which share samples and models). Plus an aggregate test
  at ``alpha / 2`` over all paired numbers, for a small drop spread over many of them: an exact sign-flip
  test on each sample's net change summed over the numbers (gained minus lost, one term per task and uid).
  It is the sign test on all discordant pairs when no sample is discordant in two numbers, and stays valid
  when the clean and robust numbers of a sample move together. The two halves of ``alpha`` keep the
  gate's false-alarm rate at ``alpha`` in all.
* ``count``: the baseline has no per-sample data (format 1, written before these gates): the old
  two-sided pooled two-proportion test at ``alpha``, which treats baseline and run as independent samples
  and so needs drops several times larger to fire (its power is printed with it).

``tolerance`` (absolute, in accuracy): for a count baseline it replaces the test (a drop larger than it
regresses), as it always did; with per-sample data a number must also fall by more than it, so a
tolerance derived from a recipe's run-to-run variance keeps retrained models from failing on that
variance alone. ``exact``: identical counts (count) or identical per-sample correctness (paired modes).

Power: :func:`power_table` gives, per number and for the aggregate, the smallest drop detected with 80 %
probability at the run's n and baseline accuracies (exact binomial sums for the per-number tests, a
normal approximation for the aggregate; ``tests/test_regress_power.py`` checks both by simulation).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import binom, norm

from robustbench_ofa import gate_measures
from robustbench_ofa.bitsets import decode_bits, encode_bits
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.stats import two_proportion_test

#: Settings that must agree for a comparison to mean anything.
MATCH_KEYS = ("attacks", "tasks", "eps", "eps_l2", "n_samples", "params", "seed", "cascade", "caption_drop",
              "beam")
FORMAT_V1 = "robust-ofa-baseline/1"
FORMAT_V2 = "robust-ofa-baseline/2"
FORMAT = "robust-ofa-baseline/3"
FORMATS = (FORMAT_V1, FORMAT_V2, FORMAT)
#: Formats with per-sample correctness (``samples``); format 3 adds per-attack and transfer numbers, the
#: per-sample measures and the gated checks (``gate_measures``).
PER_SAMPLE_FORMATS = (FORMAT_V2, FORMAT)
#: Default allowance of flips to wrong per fixed-weight number, and over all of them (float noise; README).
ALLOW_FLIPS = 1
ALLOW_FLIPS_TOTAL = 3
#: Statuses that fail a gate: a regression, or on the same weights a number that rose (see ``gate``).
FAILING = ("REGRESSION", "CHANGED")
#: Power the stated detectable drops are computed for.
POWER = 0.8


# ---------------------------------------------------------------------------------------------------
# Per-sample encoding


def _task_of(key: str) -> str:
    return key.split("|")[1]


def _variants_of(key: str) -> list[str]:
    """The variants a number depends on: one, or a transfer number's source and target (``src>tgt``)."""
    return key.split("|")[0].split(">")


def key_kind(key: str) -> str:
    """What a number is: ``clean``, ``robust`` (worst case over attacks), ``attack`` (one attack's rows,
    ``...|attack``; cumulative under the cascade) or ``transfer`` (``src>tgt|task|transfer|eps|attack``)."""
    parts = key.split("|")
    if len(parts) == 3:
        return "clean"
    if parts[2] == "transfer":
        return "transfer"
    return "attack" if len(parts) == 5 else "robust"


def _sample_of(key: str, uid: str) -> tuple[str, str]:
    """The evaluated sample behind a flip: an attack's number and the worst case of its threat share it."""
    return "|".join(key.split("|")[:4]), uid


def per_sample(data: dict) -> dict[str, dict[str, bool]] | None:
    """key -> {uid: correct} of a baseline or run with per-sample data (None for a count-only baseline)."""
    samples = data.get("samples")
    if not samples:
        return None
    uids, correct, present = samples["uids"], samples["correct"], samples.get("present", {})
    out = {}
    for key, hexbits in correct.items():
        index = uids[_task_of(key)]
        bits = decode_bits(hexbits, len(index))
        have = decode_bits(present[key], len(index)) if key in present else [True] * len(index)
        out[key] = {u: b for u, b, h in zip(index, bits, have) if h}
    return out


def encode_samples(flags: dict[str, dict[str, bool]]) -> dict:
    """The baseline's ``samples`` block from key -> {uid: correct}."""
    uids: dict[str, set] = {}
    for key, d in flags.items():
        uids.setdefault(_task_of(key), set()).update(d)
    index = {t: sorted(u) for t, u in sorted(uids.items())}
    correct, present = {}, {}
    for key in sorted(flags):
        d, order = flags[key], index[_task_of(key)]
        correct[key] = encode_bits([bool(d.get(u, False)) for u in order])
        if len(d) != len(order):
            present[key] = encode_bits([u in d for u in order])
    out = {"uids": index, "correct": correct}
    if present:
        out["present"] = present
    return out


# ---------------------------------------------------------------------------------------------------
# Runs and baselines


def numbers_from_results(results_dir: str | Path) -> dict:
    """Counts (k, n), per-sample correctness and weights of every number of a finished run, plus provenance."""
    from robustbench_ofa.evaluation.aggregate import robust_flags
    from robustbench_ofa.evaluation.store import ResultsStore

    path = Path(results_dir) / "results.sqlite"
    if not path.exists():
        raise RobustOFAError(f"{results_dir}: no results.sqlite (not a robust-ofa evaluate output directory)")
    store = ResultsStore(path)
    if not store.get_meta("complete", False):
        raise RobustOFAError(f"{results_dir}: the run is incomplete; rerun the same evaluate command to finish it")
    flags: dict[str, dict[str, bool]] = {}
    clean = store.frame("clean")
    for r in clean.itertuples():
        flags.setdefault(f"{r.variant}|{r.task}|clean", {})[str(r.uid)] = bool(r.correct)
    res = store.frame("results")
    if len(res):
        for (variant, task, norm_, label, uid), ok in robust_flags(res).items():
            flags.setdefault(f"{variant}|{task}|{norm_}|{label}", {})[str(uid)] = bool(ok)
        # Each attack's own rows, when a threat has more than one: the worst case hides an attack that got
        # weaker where another fools the same samples (under the cascade a row counts what this attack and
        # those before it fooled, as in the report's attack table).
        for (variant, task, norm_, label), g in res.groupby(["variant", "task", "norm", "eps_label"], sort=True):
            if g.attack.nunique() > 1:
                for r in g.itertuples():
                    flags.setdefault(f"{variant}|{task}|{norm_}|{label}|{r.attack}", {})[str(r.uid)] = \
                        bool(r.adv_correct)
    transfer = store.frame("transfer")
    if len(transfer):  # the transfer matrix's cells: right on the image crafted on the source (and on the clean one,
        # so every cell covers the same samples whatever the target's weights: its first ``transfer_samples``)
        for r in transfer.itertuples():
            flags.setdefault(f"{r.source}>{r.target}|{r.task}|transfer|{r.eps_label}|{r.attack}", {})[str(r.uid)] = \
                bool(r.target_clean_correct and r.adv_correct)
    numbers = {k: [sum(d.values()), len(d)] for k, d in sorted(flags.items())}
    provenance = store.get_meta("run", {})
    weights = {name: info.get("sha256") for name, info in sorted(provenance.get("variants", {}).items())
               if info.get("sha256")}
    samples = encode_samples(flags)
    return {"format": FORMAT, "settings": store.settings(), "provenance": provenance, "weights": weights,
            "numbers": numbers, "samples": samples,
            "measures": gate_measures.measures_from_rows(res, samples["uids"]),
            "checks": gate_measures.checks_from_rows(store.frame("checks"))}


def write_baseline(results_dir: str | Path, out: str | Path, data: dict | None = None) -> Path:
    """Write a run's numbers (``data``, if already read from ``results_dir``) as a baseline, atomically."""
    data = numbers_from_results(results_dir) if data is None else data
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(out)
    return out


def read_baseline(path: str | Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise RobustOFAError(f"{path}: baseline file not found") from None
    except json.JSONDecodeError as exc:
        raise RobustOFAError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or data.get("format") not in FORMATS:
        raise RobustOFAError(f"{path}: field 'format': expected one of {', '.join(map(repr, FORMATS))}")
    for key in ("settings", "numbers"):
        if not isinstance(data.get(key), dict):
            raise RobustOFAError(f"{path}: field '{key}' is missing or not an object")
    if data["format"] in PER_SAMPLE_FORMATS:
        samples = data.get("samples")
        if not isinstance(samples, dict) or not isinstance(samples.get("uids"), dict) \
                or not isinstance(samples.get("correct"), dict):
            raise RobustOFAError(f"{path}: field 'samples' must hold 'uids' and 'correct' objects")
        try:
            flags = per_sample(data)
        except (KeyError, ValueError) as exc:
            raise RobustOFAError(f"{path}: field 'samples': {exc}") from None
        for key, (k, n) in data["numbers"].items():
            d = flags.get(key)
            if d is None or (sum(d.values()), len(d)) != (k, n):
                raise RobustOFAError(f"{path}: field 'samples': '{key}' does not match its count {k}/{n}")
    if data["format"] == FORMAT:
        for name in ("measures", "checks"):
            if not isinstance(data.setdefault(name, {}), dict):
                raise RobustOFAError(f"{path}: field '{name}' must be an object")
        for key, entry in data["measures"].items():
            order = data["samples"]["uids"].get(_task_of(key)) if key.count("|") == 4 else None
            try:
                if order is None:
                    raise ValueError("expected variant|task|norm|eps|attack of an evaluated task")
                gate_measures.decode(entry, order)
            except (KeyError, TypeError, ValueError) as exc:
                raise RobustOFAError(f"{path}: field 'measures': '{key}': {exc}") from None
    return data


def align(baseline: dict, run: dict) -> tuple[dict, list[str]]:
    """The run as an older baseline recorded it: a format-2 baseline has no per-attack or transfer numbers,
    measures or checks, so those are left out of the comparison, and said so (a note per gate)."""
    if baseline.get("format") == FORMAT:
        return run, []
    original = run
    dropped = [k for k in run["numbers"] if key_kind(k) in ("attack", "transfer")]
    run = {**run, "numbers": {k: v for k, v in run["numbers"].items() if k not in dropped},
           "measures": {}, "checks": {}}
    if run.get("samples"):
        run["samples"] = {**run["samples"], "correct": {k: v for k, v in run["samples"]["correct"].items()
                                                        if k not in dropped},
                          "present": {k: v for k, v in run["samples"].get("present", {}).items() if k not in dropped}}
    # said only where it loses something: numbers, or the measures of variants on the baseline's weights
    fixed = any(_same_weights(baseline, original, k) for k in original.get("measures") or {})
    if baseline.get("format") == FORMAT_V1 or not (dropped or fixed):
        return run, []
    return run, [f"baseline format {baseline.get('format')}: per-attack and transfer numbers, per-sample measures "
                 "and checks are not in it, so not gated (`regress --update` records them)"]


def require_same_weights(baseline: dict, run: dict, source: str) -> None:
    """Fail when a variant's weights differ from the baseline's: a gate meant for fixed weights (the code
    gate) would otherwise fall back to the paired test of retrained weights, which needs far larger changes."""
    if per_sample(baseline) is None:
        raise RobustOFAError(f"{source}: --require-same-weights needs a baseline with per-sample data (format 2+)")
    base_w, run_w = baseline.get("weights") or {}, run.get("weights") or {}
    for name in sorted(set(base_w) | set(run_w)):
        if not base_w.get(name) or base_w.get(name) != run_w.get(name):
            raise RobustOFAError(
                f"{source}: weights of '{name}' are not the baseline's (SHA-256 differs or is missing): this gate "
                "compares fixed weights; if the models were rebuilt on purpose, refresh the baseline with --update")


def check_comparable(baseline: dict, run: dict, source: str) -> None:
    """Refuse to compare runs that measured different things."""
    for key in MATCH_KEYS:
        a, b = baseline["settings"].get(key), run["settings"].get(key)
        if a != b:
            raise RobustOFAError(f"{source}: baseline mismatch: setting '{key}' is {a!r} in the baseline, {b!r} in the run")
    ba, ru = set(baseline["numbers"]), set(run["numbers"])
    if ba != ru:
        extra = sorted(ba ^ ru)[0]
        raise RobustOFAError(f"{source}: baseline mismatch: {extra!r} is in only one of baseline and run "
                             "(other variants, tasks or eps)")
    data_a = baseline.get("provenance", {}).get("data")
    data_b = run.get("provenance", {}).get("data")
    if data_a and data_b and data_a != data_b:
        raise RobustOFAError(f"{source}: baseline mismatch: evaluation data differ ({data_a} vs {data_b})")
    fa, fb = per_sample(baseline), per_sample(run)
    if fa is not None and fb is not None:
        for key in sorted(fa):
            if set(fa[key]) != set(fb[key]):
                uid = sorted(set(fa[key]) ^ set(fb[key]))[0]
                raise RobustOFAError(f"{source}: baseline mismatch: sample {uid!r} of '{key}' is in only one of "
                                     "baseline and run (other evaluation samples)")


# ---------------------------------------------------------------------------------------------------
# Tests


@functools.lru_cache(maxsize=1 << 16)
def mcnemar_lower(b: int, c: int) -> float:
    """One-sided exact McNemar p-value for a drop: P(X >= b), X ~ Binomial(b + c, 1/2); 1 with no discordance.

    Cached: a gate asks for the same few small (b, c) pairs again and again (most numbers have no
    discordance), and each scipy call costs about 70 us of overhead."""
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be non-negative, got b={b}, c={c}")
    return 1.0 if b + c == 0 else float(binom.sf(b - 1, b + c, 0.5))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (reject where adjusted p < alpha): FWER control under any dependence."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def sign_flip_lower(net: Iterable[int]) -> float:
    """Exact one-sided p-value of a drop for per-cluster net changes s_j (gained - lost): P(sum e_j|s_j| <= sum
    s_j) over independent random signs e_j (the sign test on discordant pairs when every |s_j| <= 1)."""
    mags = [abs(int(s)) for s in net if s]
    total = sum(int(s) for s in net)
    if not mags:
        return 1.0
    top = sum(mags)
    dist = np.zeros(2 * top + 1)
    dist[top] = 1.0
    for m in mags:  # distribution of the signed sum, support -top..top
        dist = 0.5 * (np.roll(dist, m) + np.roll(dist, -m))
    return float(min(1.0, dist[: total + top + 1].sum()))


@dataclass
class Comparison:
    key: str
    base_k: int
    base_n: int
    new_k: int
    new_n: int
    p_value: float
    status: str  # "ok", "REGRESSION", "improvement", "CHANGED" (same weights, rose: fails)
    #: "count" (two-proportion test), "fixed" (same weights: flips counted), "paired" (McNemar + Holm).
    mode: str = "count"
    lost: int | None = None
    gained: int | None = None
    #: Holm-adjusted p (paired) or None.
    p_adjusted: float | None = None
    lost_uids: list[str] = field(default_factory=list)
    gained_uids: list[str] = field(default_factory=list)
    #: The variant's weights are the baseline's (SHA-256 equal).
    same_weights: bool = False

    @property
    def delta(self) -> float:
        return self.new_k / self.new_n - self.base_k / self.base_n


@dataclass
class Aggregate:
    """One gate-wide test over the numbers of one mode."""

    mode: str  # "fixed" or "paired"
    numbers: int
    lost: int
    gained: int
    p_value: float | None
    status: str
    rule: str


@dataclass
class Gate:
    rows: list[Comparison]
    aggregates: list[Aggregate]
    alpha: float
    tolerance: float | None
    allow_flips: int
    allow_flips_total: int
    notes: list[str] = field(default_factory=list)
    aggregate_tolerance: float | None = None
    #: Fixed-weight variants only: per-sample measures of every attack and the gated checks (``gate_measures``).
    measures: list[gate_measures.MeasureRow] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(r.status in FAILING for r in (*self.rows, *self.aggregates, *self.measures))


def _same_weights(baseline: dict, run: dict, key: str) -> bool:
    """Whether every variant number ``key`` depends on has the baseline's weights."""
    for variant in _variants_of(key):
        a = (baseline.get("weights") or {}).get(variant)
        b = (run.get("weights") or {}).get(variant)
        if not a or a != b:
            return False
    return True


def _aggregate_allowance(tolerance: float | None, aggregate_tolerance: float | None) -> float:
    """The mean drop the paired aggregate test must also exceed (``aggregate_tolerance``, else ``tolerance``)."""
    return (tolerance or 0.0) if aggregate_tolerance is None else aggregate_tolerance


def gate(baseline: dict, run: dict, alpha: float = 0.05, tolerance: float | None = None, exact: bool = False,
         allow_flips: int = ALLOW_FLIPS, allow_flips_total: int = ALLOW_FLIPS_TOTAL,
         aggregate_tolerance: float | None = None) -> Gate:
    """Compare every number of ``run`` with ``baseline`` by the test that fits what changed (module doc).

    ``tolerance`` applies where weights differ (paired and count rows): on the baseline's weights a sample
    that turned wrong is a change of behaviour however small the drop, so fixed rows ignore it and fail on
    more than ``allow_flips`` flips alone. ``aggregate_tolerance`` (default: ``tolerance``): the mean drop
    over the paired numbers the aggregate test must also exceed; a recipe's run-to-run variance is far
    smaller in the mean than per number."""
    run, notes = align(baseline, run)
    fa, fb = per_sample(baseline), per_sample(run)
    tol = tolerance or 0.0
    agg_tol = _aggregate_allowance(tolerance, aggregate_tolerance)
    rows: list[Comparison] = []
    if fa is None or fb is None:
        notes.append("count-only baseline (no per-sample data): two-proportion test, far less power than the "
                     "paired gate; refresh it with `robust-ofa regress --update` to get per-sample gating")
        for key in sorted(baseline["numbers"]):
            bk, bn = baseline["numbers"][key]
            nk, nn = run["numbers"][key]
            p = two_proportion_test(bk, bn, nk, nn) if bn and nn else 1.0
            delta = nk / nn - bk / bn
            if exact:
                changed = (bk, bn) != (nk, nn)
            elif tolerance is not None:
                changed = abs(delta) > tolerance + 1e-12
            else:
                changed = p < alpha
            status = "ok" if not changed else ("REGRESSION" if delta < 0 else "improvement")
            rows.append(Comparison(key, bk, bn, nk, nn, p, status,
                                   same_weights=_same_weights(baseline, run, key)))
        return Gate(rows, [], alpha, tolerance, allow_flips, allow_flips_total, notes,
                    aggregate_tolerance=aggregate_tolerance)

    for key in sorted(baseline["numbers"]):
        a, b = fa[key], fb[key]
        lost = sorted(u for u in a if a[u] and not b[u])
        gained = sorted(u for u in a if b[u] and not a[u])
        same = _same_weights(baseline, run, key)
        rows.append(Comparison(key, sum(a.values()), len(a), sum(b.values()), len(b),
                               mcnemar_lower(len(lost), len(gained)), "ok", "fixed" if same else "paired",
                               len(lost), len(gained), lost_uids=lost, gained_uids=gained, same_weights=same))
    paired = [r for r in rows if r.mode == "paired"]
    for r, adj in zip(paired, holm([r.p_value for r in paired])):
        r.p_adjusted = adj
    for r in rows:
        beyond = -r.delta > tol + 1e-12
        if exact:
            bad, good = r.lost > 0, r.gained > 0
        elif r.mode == "fixed":
            bad, good = r.lost > allow_flips, r.gained > allow_flips
        else:
            bad = r.p_adjusted < alpha / 2 and beyond
            good = holm_improvement(r, paired) < alpha / 2 and r.delta > tol + 1e-12
        # On the same weights a number that rose is no better model: the evaluation changed (a weaker attack,
        # a more lenient metric), which is what a gate on fixed weights exists to catch. It fails as CHANGED.
        rose = "CHANGED" if exact or r.mode == "fixed" else "improvement"
        r.status = "REGRESSION" if bad else (rose if good else "ok")
    aggregates = []
    fixed = [r for r in rows if r.mode == "fixed"]
    limit = 0 if exact else allow_flips_total
    if fixed:
        # distinct samples: a sample that turned wrong under FGSM turns wrong in the worst case too
        lost = len({_sample_of(r.key, u) for r in fixed for u in r.lost_uids})
        gained = len({_sample_of(r.key, u) for r in fixed for u in r.gained_uids})
        aggregates.append(Aggregate("fixed", len(fixed), lost, gained, None,
                                    "REGRESSION" if lost > limit else ("CHANGED" if gained > limit else "ok"),
                                    f"same weights: at most {limit} samples turned wrong, and {limit} turned right, "
                                    "over all these numbers"))
    measures = _fixed_measures(baseline, run, allow_flips=0 if exact else allow_flips)
    moved = [r for r in measures if r.kind == "measure"]
    if moved:
        n_moved = len({_sample_of(r.key, u) for r in moved for u, _ in r.details})
        aggregates.append(Aggregate("measures", len(moved), n_moved, 0, None, "CHANGED" if n_moved > limit else "ok",
                                    f"same weights: at most {limit} attacked samples whose gradient evaluations, "
                                    "queries or norms moved, over all attacks"))
    if paired:
        net = _net_per_sample(paired)
        p = sign_flip_lower(net.values())
        mean_drop = -sum(r.delta for r in paired) / len(paired)
        bad = p < alpha / 2 and mean_drop > agg_tol + 1e-12 and not exact
        if exact:
            bad = any(r.lost for r in paired)
        aggregates.append(Aggregate("paired", len(paired), sum(r.lost for r in paired),
                                    sum(r.gained for r in paired), p, "REGRESSION" if bad else "ok",
                                    f"sign-flip test on per-sample net changes, one-sided at alpha/2 = {alpha / 2:g}"
                                    + (f", mean drop > {agg_tol:g}" if agg_tol else "")))
    return Gate(rows, aggregates, alpha, tolerance, allow_flips, allow_flips_total, notes,
                aggregate_tolerance=aggregate_tolerance, measures=measures)


def _fixed_measures(baseline: dict, run: dict, allow_flips: int) -> list[gate_measures.MeasureRow]:
    """Measures and checks of the variants with the baseline's weights (retrained weights attack along other
    trajectories, so only their numbers are compared)."""
    if baseline.get("format") != FORMAT or "samples" not in run:
        return []
    uids = baseline["samples"]["uids"]
    bm, rm = baseline.get("measures", {}), run.get("measures", {})
    keys = sorted(k for k in set(bm) | set(rm) if _same_weights(baseline, run, k) and _task_of(k) in uids)
    base = {k: bm.get(k) or _empty_entry(uids[_task_of(k)]) for k in keys}
    new = {k: rm.get(k) or _empty_entry(uids[_task_of(k)]) for k in keys}
    rows = gate_measures.compare_measures(base, new, uids, keys, allow_flips)
    bc, rc = baseline.get("checks", {}), run.get("checks", {})
    check_keys = [k for k in sorted(set(bc) | set(rc)) if _same_weights(baseline, run, k)]
    return rows + gate_measures.compare_checks(bc, rc, check_keys, allow_flips)


def _empty_entry(order: Sequence[str]) -> dict:
    """A measured key no sample of which was attacked (e.g. every sample fooled earlier in the cascade)."""
    return {"present": encode_bits([False] * len(order)),
            **{name: [] for name in (*gate_measures.INT_MEASURES, *gate_measures.FLOAT_MEASURES)}}


def holm_improvement(row: Comparison, paired: list[Comparison]) -> float:
    """Holm-adjusted one-sided p of an improvement of ``row`` among ``paired`` (reported, never failing)."""
    ps = [mcnemar_lower(r.gained, r.lost) for r in paired]
    return holm(ps)[paired.index(row)]


def _net_per_sample(rows: Sequence[Comparison]) -> dict[tuple[str, str], int]:
    """(task, uid) -> gained minus lost over ``rows``: one cluster per evaluated sample."""
    net: dict[tuple[str, str], int] = {}
    for r in rows:
        t = _task_of(r.key)
        for u in r.gained_uids:
            net[(t, u)] = net.get((t, u), 0) + 1
        for u in r.lost_uids:
            net[(t, u)] = net.get((t, u), 0) - 1
    return net


def compare(baseline: dict, run: dict, alpha: float = 0.05, tolerance: float | None = None,
            exact: bool = False, **kw) -> list[Comparison]:
    """The per-number rows of :func:`gate`."""
    return gate(baseline, run, alpha, tolerance, exact, **kw).rows


def describe_update(old: dict, new: dict) -> list[str]:
    """What a refreshed baseline changes against the one it replaces: settings, weights, numbers added or
    removed, every number whose samples changed (exact comparison) and every measure that moved, so that
    ``regress --update`` never rewrites a baseline silently."""
    out = []
    for key in sorted(set(old.get("settings", {})) | set(new.get("settings", {}))):
        a, b = old.get("settings", {}).get(key), new.get("settings", {}).get(key)
        if a != b:
            out.append(f"setting {key}: {a!r} -> {b!r}")
    for name in sorted(set(old.get("weights") or {}) | set(new.get("weights") or {})):
        a, b = (old.get("weights") or {}).get(name), (new.get("weights") or {}).get(name)
        if a != b:
            out.append(f"weights of {name}: {'new' if not a else 'removed' if not b else 'changed'}")
    if old.get("format") != new.get("format"):
        out.append(f"format: {old.get('format')} -> {new.get('format')}")
    added = sorted(set(new["numbers"]) - set(old["numbers"]))
    removed = sorted(set(old["numbers"]) - set(new["numbers"]))
    if added:
        out.append(f"{len(added)} number(s) added, e.g. {added[0]}")
    if removed:
        out.append(f"{len(removed)} number(s) removed, e.g. {removed[0]}")
    common = sorted(set(old["numbers"]) & set(new["numbers"]))
    fa, fb = per_sample(old), per_sample(new)
    for key in common:
        (bk, bn), (nk, nn) = old["numbers"][key], new["numbers"][key]
        if fa is not None and fb is not None and set(fa[key]) == set(fb[key]):
            lost = sum(1 for u in fa[key] if fa[key][u] and not fb[key][u])
            gained = sum(1 for u in fa[key] if fb[key][u] and not fa[key][u])
            if lost or gained:
                out.append(f"{key}: {bk}/{bn} -> {nk}/{nn} ({lost} sample(s) turned wrong, {gained} right)")
        elif (bk, bn) != (nk, nn):
            out.append(f"{key}: {bk}/{bn} -> {nk}/{nn}")
    if old.get("format") == FORMAT and old["samples"]["uids"] == new["samples"]["uids"]:
        uids = new["samples"]["uids"]
        keys = sorted(set(old.get("measures", {})) & set(new.get("measures", {})))
        for r in gate_measures.compare_measures(old["measures"], new["measures"], uids, keys, 0):
            if r.moved:
                out.append(f"{r.key}: {r.moved} of {r.compared} attacked sample(s) moved, e.g. "
                           f"{r.details[0][0]}: {r.details[0][1]}")
        for r in gate_measures.compare_checks(old.get("checks", {}), new.get("checks", {}),
                                              sorted(set(old.get("checks", {})) & set(new.get("checks", {}))), 0):
            if r.moved:
                out.append(f"{r.key}: {r.details[0][1]}")
    return out


# ---------------------------------------------------------------------------------------------------
# Power: the smallest drop each test detects with 80 % probability


def _flip_model(k: int, n: int, drop: float, discordance: float) -> tuple[np.ndarray, np.ndarray]:
    """pmfs of lost (b) and gained (c) samples of one number under the change model (see paired_power)."""
    q_lost = min(1.0, (discordance * n / 2 + drop * n) / k) if k else 0.0
    q_gain = min(1.0, discordance * n / 2 / (n - k)) if n > k else 0.0
    return binom.pmf(np.arange(k + 1), k, q_lost), binom.pmf(np.arange(n - k + 1), n - k, q_gain)


def _grid(k: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(k + 1)[:, None], np.arange(n - k + 1)[None, :]


def count_power(k_base: int, n_base: int, n_new: int, drop: float, alpha: float = 0.05,
                tolerance: float | None = None, discordance: float | None = None) -> float:
    """P(the count gate flags a regression) when the run's accuracy is the baseline's minus ``drop``.

    ``discordance`` None: the run's count is Binomial(n, p - drop), independent of the baseline (what the
    two-proportion test assumes); a number: the same samples, changed as in :func:`paired_power` (0 = the
    same weights, where the count gate fires exactly when the drop passes its threshold)."""
    base = k_base / n_base
    if discordance is None:
        ks = np.arange(n_new + 1)
        pmf = binom.pmf(ks, n_new, max(0.0, base - drop))
    else:
        pb, pc = _flip_model(k_base, n_base, drop, discordance)
        bb, cc = _grid(k_base, n_base)
        pmf = np.bincount((k_base - bb + cc).ravel(), weights=(pb[:, None] * pc[None, :]).ravel(),
                          minlength=n_base + 1)
        ks = np.arange(len(pmf))
    if tolerance is not None:
        hit = ks / n_new < base - tolerance - 1e-12
    else:
        hit = (ks / n_new < base - 1e-12) & np.array([two_proportion_test(k_base, n_base, int(k), n_new) < alpha
                                                      for k in ks])
    return float(pmf[hit].sum())


def _reject_table(n_b: int, n_c: int, threshold: float) -> np.ndarray:
    """reject[b, c]: one-sided exact McNemar p(b, c) < threshold, for b <= n_b, c <= n_c."""
    b = np.arange(n_b + 1)[:, None]
    c = np.arange(n_c + 1)[None, :]
    total = b + c
    p = np.where(total == 0, 1.0, binom.sf(b - 1, np.maximum(total, 1), 0.5))
    return p < threshold


def paired_power(k: int, n: int, drop: float, threshold: float, discordance: float,
                 tolerance: float | None = None) -> float:
    """P(a paired number is flagged): of its n samples k were correct in the baseline; the run loses each
    baseline-correct sample with probability (r n / 2 + drop n) / k and gains each baseline-wrong one with
    probability (r n / 2) / (n - k), r = ``discordance`` (symmetric, change-free disagreement); flagged
    when the one-sided McNemar p < ``threshold`` and the observed drop exceeds ``tolerance``."""
    if k == 0:
        return 0.0
    pb, pc = _flip_model(k, n, drop, discordance)
    bb, cc = _grid(k, n)
    reject = _reject_table(k, n - k, threshold) & ((bb - cc) / n > (tolerance or 0.0) + 1e-12)
    return float(pb @ reject.astype(float) @ pc)


def aggregate_power(counts: Sequence[tuple[int, int]], drop: float, threshold: float, discordance: float,
                    tolerance: float | None = None) -> float:
    """P(the aggregate test fires) for a uniform ``drop`` on every number (k_i, n_i), under the model of
    :func:`paired_power` with numbers and samples independent (normal approximation of the sign test)."""
    mean = var = var0 = 0.0
    n_total = sum(n for _, n in counts)
    for k, n in counts:
        if k == 0:
            continue
        q_lost = min(1.0, (discordance * n / 2 + drop * n) / k)
        q_gain = min(1.0, discordance * n / 2 / (n - k)) if n > k else 0.0
        mean += k * q_lost - (n - k) * q_gain
        var += k * q_lost * (1 - q_lost) + (n - k) * q_gain * (1 - q_gain)
        var0 += k * q_lost + (n - k) * q_gain
    if var0 == 0:
        return 0.0
    z = norm.isf(threshold)
    # reject when (lost - gained) > z sqrt(discordant); the discordant count is near its mean var0
    tol_lost = (tolerance or 0.0) * n_total
    need = max(z * math.sqrt(var0), tol_lost)
    return float(norm.sf((need - mean) / math.sqrt(max(var, 1e-12))))


def smallest_drop(power_at, top: float, target: float = POWER) -> float | None:
    """Smallest drop in (0, top] (to 0.05 points) with power_at(drop) >= target; None if even top falls short."""
    if top <= 0 or power_at(top) < target:
        return None
    lo, hi = 0.0, top
    while hi - lo > 0.0005:
        mid = (lo + hi) / 2
        if power_at(mid) >= target:
            hi = mid
        else:
            lo = mid
    return hi


def observed_discordance(rows: Sequence[Comparison]) -> float:
    """Symmetric (change-free) disagreement rate of a run: 2 min(lost, gained) / n, pooled over ``rows``."""
    n = sum(r.base_n for r in rows)
    return 2 * sum(min(r.lost or 0, r.gained or 0) for r in rows) / n if n else 0.0


def count_threshold(k: int, n: int, n_new: int, alpha: float = 0.05, tolerance: float | None = None) -> float | None:
    """Smallest observed drop the count gate flags (what it detects on the same weights, where nothing is random)."""
    for k_new in range(round(k / n * n_new), -1, -1):
        drop = k / n - k_new / n_new
        if drop <= 1e-12:
            continue
        if (drop > tolerance + 1e-12) if tolerance is not None else two_proportion_test(k, n, k_new, n_new) < alpha:
            return drop
    return None


@functools.lru_cache(maxsize=4096)
def count_drop(k: int, n: int, n_new: int, alpha: float, tolerance: float | None,
               discordance: float | None) -> float | None:
    """80 %-power drop of the count gate for one number (see :func:`count_power`)."""
    return smallest_drop(lambda d: count_power(k, n, n_new, d, alpha, tolerance, discordance), k / n)


@functools.lru_cache(maxsize=4096)
def paired_drop(k: int, n: int, threshold: float, discordance: float, tolerance: float | None) -> float | None:
    """80 %-power drop of the paired per-number test (see :func:`paired_power`)."""
    return smallest_drop(lambda d: paired_power(k, n, d, threshold, discordance, tolerance), k / n)


@dataclass
class PowerLine:
    key: str
    mode: str
    n: int
    base_acc: float
    drop: float | None  # smallest drop (fraction) detected with 80 % probability; None: not detectable
    note: str = ""


def power_table(g: Gate, discordance: float | None = None) -> list[PowerLine]:
    """Detectable drops of every number of a gate, and of its aggregate tests (key ``ALL ...``)."""
    out = []
    paired = [r for r in g.rows if r.mode == "paired"]
    r_bg = observed_discordance(paired) if discordance is None else discordance
    thr = g.alpha / 2 / max(1, len(paired))  # Holm's first step: one regressed number among m
    agg_tol = _aggregate_allowance(g.tolerance, g.aggregate_tolerance)
    for r in g.rows:
        acc = r.base_k / r.base_n
        if r.mode == "count" and r.same_weights:  # deterministic: a threshold, not a probability
            drop = count_threshold(r.base_k, r.base_n, r.new_n, g.alpha, g.tolerance)
            note = "two-proportion test, same weights: fails exactly from this drop on"
        elif r.mode == "count":
            drop = count_drop(r.base_k, r.base_n, r.new_n, g.alpha, g.tolerance, discordance)
            note = "two-proportion test"
        elif r.mode == "fixed":
            drop = (g.allow_flips + 1) / r.base_n if acc > 0 else None
            drop = drop if drop is not None and drop <= acc else None
            note = f"same weights: {g.allow_flips + 1}+ flips to wrong always fail"
        else:
            drop = paired_drop(r.base_k, r.base_n, thr, r_bg, g.tolerance)
            note = f"McNemar, Holm over {len(paired)}, background discordance {100 * r_bg:.1f}%"
        out.append(PowerLine(r.key, r.mode, r.base_n, acc, drop, note))
    counts = [r for r in g.rows if r.mode == "count"]
    if counts:
        def any_fires(d: float) -> float:
            miss = 1.0
            for r in counts:
                if r.same_weights:
                    t = count_threshold(r.base_k, r.base_n, r.new_n, g.alpha, g.tolerance)
                    miss *= 1.0 if t is None or d < t else 0.0
                else:
                    miss *= 1 - count_power(r.base_k, r.base_n, r.new_n, d, g.alpha, g.tolerance, discordance)
            return 1 - miss
        top = min(r.base_k / r.base_n for r in counts)
        out.append(PowerLine("ALL (uniform drop, any number fires)", "count", sum(r.base_n for r in counts),
                             sum(r.base_k for r in counts) / sum(r.base_n for r in counts),
                             smallest_drop(any_fires, top), "no aggregate test; numbers taken as independent"))
    fixed = [r for r in g.rows if r.mode == "fixed"]
    if fixed:
        n = sum(r.base_n for r in fixed)
        out.append(PowerLine("ALL fixed-weight numbers (uniform drop)", "fixed", n,
                             sum(r.base_k for r in fixed) / n, (g.allow_flips_total + 1) / n,
                             f"{g.allow_flips_total + 1}+ flips to wrong in all always fail"))
    if paired:
        counts_p = [(r.base_k, r.base_n) for r in paired]
        top = min(r.base_k / r.base_n for r in paired)
        n = sum(r.base_n for r in paired)
        out.append(PowerLine("ALL paired numbers (uniform drop)", "paired", n, sum(k for k, _ in counts_p) / n,
                             smallest_drop(lambda d: aggregate_power(counts_p, d, g.alpha / 2, r_bg, agg_tol), top),
                             f"sign-flip test, background discordance {100 * r_bg:.1f}%"))
    return out


# ---------------------------------------------------------------------------------------------------
# Output


def _pct(k: int, n: int) -> str:
    return f"{100 * k / n:5.1f}%" if n else "  n/a "


def format_comparisons(rows: list[Comparison] | Gate) -> str:
    g = rows if isinstance(rows, Gate) else None
    rows = g.rows if g else rows
    head = (f"{'number':44} {'baseline':>14} {'run':>14} {'delta':>7} {'lost':>5} {'gain':>5} {'test':>6} "
            f"{'p':>8} {'p(Holm)':>8}  status")
    lines = [head, "-" * len(head)]
    for r in rows:
        lost = "" if r.lost is None else str(r.lost)
        gained = "" if r.gained is None else str(r.gained)
        padj = "" if r.p_adjusted is None else f"{r.p_adjusted:.3g}"
        p = "" if r.mode == "fixed" else f"{r.p_value:.3g}"
        lines.append(f"{r.key:44} {r.base_k:>4}/{r.base_n:<4}{_pct(r.base_k, r.base_n)} "
                     f"{r.new_k:>4}/{r.new_n:<4}{_pct(r.new_k, r.new_n)} {100 * r.delta:+7.1f} {lost:>5} "
                     f"{gained:>5} {r.mode:>6} {p:>8} {padj:>8}  {r.status}")
    if g:
        lines += format_measures(g.measures)
        for a in g.aggregates:
            p = "" if a.p_value is None else f", p = {a.p_value:.3g}"
            if a.mode == "measures":
                lines.append(f"aggregate (measures, {a.numbers} attacks): {a.lost} sample(s) moved [{a.rule}]  "
                             f"{a.status}")
                continue
            lines.append(f"aggregate ({a.mode}, {a.numbers} numbers): {a.lost} lost, {a.gained} gained{p} "
                         f"[{a.rule}]  {a.status}")
        lines += [f"note: {n}" for n in g.notes]
    return "\n".join(lines)


def format_measures(rows: Sequence[gate_measures.MeasureRow]) -> list[str]:
    """One summary line for the measures and checks compared, then every one that moved."""
    if not rows:
        return []
    n_measures = sum(r.kind == "measure" for r in rows)
    n_checks = len(rows) - n_measures
    moved = [r for r in rows if r.moved]
    out = [f"same weights: {n_measures} attacks' per-sample gradient evaluations, queries and norms (norms within "
           f"{gate_measures.NORM_RTOL:g} relative) and {n_checks} large-eps check(s) compared: "
           f"{len(moved)} moved"]
    for r in moved:
        first = "; ".join(f"{u}: {why}" if u else why for u, why in r.details[:3])
        more = f"; ... {r.moved - 3} more" if r.moved > 3 else ""
        out.append(f"  {r.key:44} {r.moved} of {r.compared} moved ({first}{more})  {r.status}")
    return out


def format_power(lines: list[PowerLine], power: float = POWER) -> str:
    out = [f"smallest drop detected with {100 * power:.0f}% probability (accuracy points, at this n and baseline "
           "accuracy):"]
    for p in lines:
        drop = "not detectable" if p.drop is None else f"{100 * p.drop:5.1f}"
        out.append(f"  {p.key:44} n={p.n:<5} base {100 * p.base_acc:5.1f}%  drop {drop}  ({p.note})")
    return "\n".join(out)


#: The file ``robust-ofa regress`` writes into the results directory (the report's regression section).
RECORD = "regression.json"


def gate_record(g: Gate, power: list[PowerLine], baseline: str, settings: dict) -> dict:
    """What a gate decided, machine-readable: every number, the aggregates, the stated power, the verdict."""
    rows = [{"key": r.key, "mode": r.mode, "base": [r.base_k, r.base_n], "run": [r.new_k, r.new_n],
             "delta": r.delta, "lost": r.lost, "gained": r.gained,
             "p": None if r.mode == "fixed" else r.p_value, "p_holm": r.p_adjusted, "status": r.status,
             "lost_uids": r.lost_uids} for r in g.rows]
    aggs = [{"mode": a.mode, "numbers": a.numbers, "lost": a.lost, "gained": a.gained, "p": a.p_value,
             "status": a.status, "rule": a.rule} for a in g.aggregates]
    pw = [{"key": p.key, "mode": p.mode, "n": p.n, "base_acc": p.base_acc, "drop": p.drop, "note": p.note}
          for p in power]
    measures = [{"key": m.key, "kind": m.kind, "compared": m.compared, "moved": m.moved, "status": m.status,
                 "details": [list(d) for d in m.details]} for m in g.measures]
    return {"baseline": baseline, "settings": settings, "failed": g.failed, "rows": rows, "aggregates": aggs,
            "measures": measures, "power": pw, "power_target": POWER, "notes": list(g.notes)}


def write_record(results_dir: str | Path, record: dict) -> Path:
    path = Path(results_dir) / RECORD
    from robustbench_ofa.io import atomic_write_text

    return atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True) + "\n")


def explain(results_dir: str | Path, g: Gate, limit: int = 20) -> str:
    """Per failing number, the samples that turned wrong (``-``), and for a number that rose on the same weights
    (CHANGED) those that turned right (``+``): uid, reference, the run's clean/adversarial output."""
    from robustbench_ofa.evaluation.store import ResultsStore

    store = ResultsStore(Path(results_dir) / "results.sqlite")
    clean, res, samples = store.frame("clean"), store.frame("results"), store.frame("samples")
    refs = {(r.task, str(r.uid)): r.reference for r in samples.itertuples()} if len(samples) else {}
    out = []
    bad = [r for r in g.rows if r.status in FAILING]
    if not bad and any(a.status in FAILING for a in g.aggregates):
        bad = [r for r in g.rows if r.lost or r.gained]
    for m in g.measures:
        if m.status in FAILING or (m.moved and any(a.mode == "measures" and a.status in FAILING
                                                   for a in g.aggregates)):
            out.append(f"{m.key}: {m.moved} of {m.compared} attacked sample(s) moved on the same weights")
            out += [f"  ~ {u}: {why}" if u else f"  ~ {why}" for u, why in m.details[:limit]]
            if m.moved > limit:
                out.append(f"  ... and {m.moved - limit} more")
    for r in bad:
        if r.lost is None:
            out.append(f"{r.key}: count-only baseline, no per-sample data to explain")
            continue
        variant, task, *threat = r.key.split("|")
        threat = [] if threat == ["clean"] else threat
        if key_kind(r.key) == "transfer":  # the target's clean output; the transferred image is not stored
            variant, threat = variant.split(">")[-1], []
        out.append(f"{r.key}: {r.lost} sample(s) turned wrong, {r.gained} turned right")
        for sign, uids in (("-", r.lost_uids), ("+", r.gained_uids if r.status == "CHANGED" else [])):
            for uid in uids[:limit]:
                c = clean[(clean.variant == variant) & (clean.task == task) & (clean.uid == uid)]
                cpred = c.pred.iloc[0] if len(c) else "?"
                line = f"  {sign} {uid}: reference {refs.get((task, uid), '?')!r}, clean prediction {cpred!r}"
                if threat:
                    rr = res[(res.variant == variant) & (res.task == task) & (res.norm == threat[0])
                             & (res.eps_label == threat[1]) & (res.uid == uid)]
                    if len(threat) > 2:  # one attack's number
                        rr = rr[rr.attack == threat[2]]
                    fooled = rr[rr.adv_correct == 0]
                    row = fooled.iloc[0] if len(fooled) else (rr.iloc[0] if len(rr) else None)
                    if row is not None:
                        line += f", adversarial prediction {row.adv_pred!r} ({row.attack}, {row.status})"
                out.append(line + ("" if sign == "-" else " [now right]"))
            if len(uids) > limit:
                out.append(f"  ... and {len(uids) - limit} more")
    return "\n".join(out) if out else "nothing to explain: no number regressed"

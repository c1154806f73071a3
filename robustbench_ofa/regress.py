"""Regression gates for robustness numbers: a stored baseline against a new run.

A baseline is JSON: provenance (settings, package versions, model and data hashes) plus counts k/n for
every clean and worst-case robust accuracy of every variant, task and threat model. Two runs are only
compared when they measured the same thing (same variants, tasks, data, attacks and budgets); model
hashes may differ, since a changed model is exactly what the gate is for.

Tolerance, by default statistical: a number regresses when it is lower and a two-sided pooled
two-proportion test rejects equality at ``alpha``; ``--exact`` demands identical counts (deterministic
runs on the same kind of machine); ``--tolerance`` sets an absolute allowance in accuracy points.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.stats import two_proportion_test

#: Settings that must agree for a comparison to mean anything.
MATCH_KEYS = ("attacks", "tasks", "eps", "eps_l2", "n_samples", "params", "seed", "cascade", "caption_drop",
              "beam")
FORMAT = "robust-ofa-baseline/1"


def numbers_from_results(results_dir: str | Path) -> dict:
    """Counts (k, n) of every clean and worst-case robust accuracy of a finished run, plus provenance."""
    from robustbench_ofa.evaluation.outputs import compute
    from robustbench_ofa.evaluation.store import ResultsStore

    path = Path(results_dir) / "results.sqlite"
    if not path.exists():
        raise RobustOFAError(f"{results_dir}: no results.sqlite (not a robust-ofa evaluate output directory)")
    store = ResultsStore(path)
    if not store.get_meta("complete", False):
        raise RobustOFAError(f"{results_dir}: the run is incomplete; rerun the same evaluate command to finish it")
    tables = compute(store)
    numbers = {}
    for _, r in tables["clean"].iterrows():
        numbers[f"{r.variant}|{r.task}|clean"] = [int(r.k), int(r.n)]
    for _, r in tables["worst_case"].iterrows():
        numbers[f"{r.variant}|{r.task}|{r.norm}|{r.eps_label}"] = [int(r.robust_k), int(r.robust_n)]
    return {"format": FORMAT, "settings": store.settings(), "provenance": store.get_meta("run", {}),
            "numbers": numbers}


def write_baseline(results_dir: str | Path, out: str | Path) -> Path:
    data = numbers_from_results(results_dir)
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
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise RobustOFAError(f"{path}: field 'format': expected {FORMAT!r}")
    for key in ("settings", "numbers"):
        if not isinstance(data.get(key), dict):
            raise RobustOFAError(f"{path}: field '{key}' is missing or not an object")
    return data


@dataclass
class Comparison:
    key: str
    base_k: int
    base_n: int
    new_k: int
    new_n: int
    p_value: float
    status: str  # "ok", "REGRESSION", "improvement"

    @property
    def delta(self) -> float:
        return self.new_k / self.new_n - self.base_k / self.base_n


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


def compare(baseline: dict, run: dict, alpha: float = 0.05, tolerance: float | None = None,
            exact: bool = False) -> list[Comparison]:
    out = []
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
        out.append(Comparison(key, bk, bn, nk, nn, p, status))
    return out


def format_comparisons(rows: list[Comparison]) -> str:
    head = f"{'number':44} {'baseline':>14} {'run':>14} {'delta':>8} {'p':>8}  status"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.key:44} {r.base_k:>4}/{r.base_n:<4} {100 * r.base_k / r.base_n:5.1f}% "
                     f"{r.new_k:>4}/{r.new_n:<4} {100 * r.new_k / r.new_n:5.1f}% {100 * r.delta:+7.1f} "
                     f"{r.p_value:8.3g}  {r.status}")
    return "\n".join(lines)

"""Check the speed targets (``tests/speed_targets.toml``) against a pytest-benchmark JSON file: print every
ratio beside its target and gate, and fail (exit 1) when a gated ratio misses its gate, was measured with
fewer repeats than it needs, or could not be computed (a gated benchmark missing from the run).

Usage: python scripts/bench_ratios.py .benchmarks/latest.json [previous.json]
With a second file, also prints each benchmark's median relative to that earlier run (information only).
"""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

TARGETS = Path(__file__).resolve().parents[1] / "tests" / "speed_targets.toml"


@dataclass(frozen=True)
class Ratio:
    """One speed target: ``numerator``'s statistic over ``multiplier`` x ``denominator``'s, same run."""

    label: str
    numerator: str
    denominator: str
    statistic: str
    target: str
    gate: str
    why: str
    multiplier: float = 1.0
    repeats: int = 3

    @property
    def gated(self) -> bool:
        return self.gate != "none"


def load_targets(path: Path = TARGETS) -> list[Ratio]:
    """The ratios of the targets file, checked: a typo in a gate must not turn it into no gate."""
    data = tomllib.loads(path.read_text())
    out = []
    for i, entry in enumerate(data.get("ratio", [])):
        try:
            r = Ratio(**entry)
        except TypeError as exc:
            raise SystemExit(f"{path}: ratio {i + 1}: {exc}") from None
        for field in ("target", "gate"):
            value = getattr(r, field)
            if not (field == "gate" and value == "none"):
                try:
                    meets(1.0, value)
                except (ValueError, KeyError):
                    raise SystemExit(f"{path}: ratio {i + 1} ({r.label}): {field} {value!r}: expected e.g. "
                                     "'<= 1.3', '>= 1.6', '< 1', '> 1'" + (" or 'none'" if field == "gate" else "")) from None
        out.append(r)
    return out


def meets(value: float, bound: str) -> bool:
    """Whether ``value`` meets a bound written as ``<= 1.3``, ``>= 1.6``, ``< 1`` or ``> 1``."""
    op, number = bound.split()
    limit = float(number)
    return {"<=": value <= limit, ">=": value >= limit, "<": value < limit, ">": value > limit}[op]


def _benchmarks(path: str) -> dict[str, dict]:
    return {b["name"]: b for b in json.load(open(path))["benchmarks"]}


def statistic(bench: dict, name: str) -> tuple[float, int] | None:
    """(value, repeats) of one side: pytest-benchmark's median over its rounds, or the median of the
    per-round values a benchmark stores in ``extra_info[name]`` (a number counts as one round)."""
    if name == "median":
        return bench["stats"]["median"], int(bench["stats"]["rounds"])
    value = (bench.get("extra_info") or {}).get(name)
    if value is None:
        return None
    values = value if isinstance(value, list) else [value]
    return statistics.median(values), len(values)


def check(ratios: list[Ratio], benches: dict[str, dict]) -> tuple[list[str], list[str]]:
    """(lines printed, failures) for a run's benchmarks."""
    lines, failed = [], []
    for r in ratios:
        num, den = benches.get(r.numerator), benches.get(r.denominator)
        if num is None and den is None and not r.gated:
            continue
        a = statistic(num, r.statistic) if num else None
        b = statistic(den, r.statistic) if den else None
        if a is None or b is None or not b[0]:
            missing = r.numerator if a is None else r.denominator
            if r.gated:
                failed.append(f"{r.label}: not measured ({r.statistic} of {missing} missing)")
            continue
        value = a[0] / (r.multiplier * b[0])
        repeats = min(a[1], b[1])
        verdict = "information" if not r.gated else "PASS" if meets(value, r.gate) else "FAIL"
        if r.gated and repeats < r.repeats:
            verdict = "FAIL"
            failed.append(f"{r.label}: {repeats} repeat(s), the gate needs {r.repeats}")
        elif verdict == "FAIL":
            failed.append(f"{r.label}: {value:.3f}, gate {r.gate} (target {r.target})")
        lines.append(f"{r.label}: {value:.3f}  (target {r.target}, gate {r.gate}: {verdict}; "
                     f"{r.statistic} of {repeats} repeat(s): {a[0]:.4g} vs {b[0]:.4g})")
    return lines, failed


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    benches = _benchmarks(argv[0])
    lines, failed = check(load_targets(), benches)
    print("\n".join(lines))
    dist = (benches.get("test_bench_eval_2proc_1thread") or {}).get("extra_info") or {}
    if "wait_share" in dist:
        print(f"torchrun 2 procs, evaluate phase: gathering rows (all ranks arrived) / phase, worst rank: "
              f"{dist['gather_share']:.3f}  (seconds per rank {dist['gather_seconds']})")
        print(f"torchrun 2 procs, evaluate phase: waiting for the slower rank (load imbalance) / phase, worst "
              f"rank: {dist['wait_share']:.3f}  (seconds per rank {dist['wait_seconds']})")
    if len(argv) > 1:
        prev = _benchmarks(argv[1])
        for name in sorted(set(benches) & set(prev)):
            print(f"{name}: {benches[name]['stats']['median'] / prev[name]['stats']['median']:.3f} x previous run")
    for line in failed:
        print(f"FAILED speed target: {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""The speed gates (``tests/speed_targets.toml`` read by ``scripts/bench_ratios.py``) fail when they should:
a slowed hot path, too few repeats, a gated benchmark that did not run, a malformed gate. And every
benchmark a target names exists and is run by CI's benchmark script."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import bench_ratios  # noqa: E402
import ci_benchmarks  # noqa: E402

TARGETS = bench_ratios.load_targets()


def _bench(name: str, median: float, rounds: int = 3, **extra) -> dict:
    return {"name": name, "stats": {"median": median, "rounds": rounds}, "extra_info": extra}


def _passing_run() -> list[dict]:
    """A run meeting every gate: each ratio placed at its gate's safe side (value 1 then adjusted)."""
    benches: dict[str, dict] = {}

    def value(name: str, stat: str) -> float:
        b = benches.setdefault(name, _bench(name, 1.0))
        return b["stats"]["median"] if stat == "median" else b["extra_info"].setdefault(stat, [1.0] * 3)[0]

    for r in TARGETS:  # a benchmark is the numerator of one ratio per statistic, so file order solves them all
        op, bound = r.gate.split() if r.gated else ("<=", "1e9")
        num = float(bound) * (0.9 if op.startswith("<") else 1.1) * r.multiplier * value(r.denominator, r.statistic)
        value(r.numerator, r.statistic)
        if r.statistic == "median":
            benches[r.numerator]["stats"]["median"] = num
        else:
            benches[r.numerator]["extra_info"][r.statistic] = [num] * max(r.repeats, 3)
    return list(benches.values())


def _write(tmp_path, benches) -> str:
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"benchmarks": benches}))
    return str(path)


def test_every_target_names_benchmarks_that_exist_and_ci_runs():
    files = sorted(ROOT.glob("tests/test_bench_*.py"))
    defined = {m for f in files for m in re.findall(r"^def (test_bench_\w+)", f.read_text(), re.M)}
    run_by_ci = {Path(a).name for a in ci_benchmarks.BENCH_FILES}
    for r in TARGETS:
        for name in (r.numerator, r.denominator):
            base = name.split("[")[0]
            assert base in defined, f"{r.label}: no benchmark {base}"
            owner = next(f.name for f in files if re.search(rf"^def {base}\b", f.read_text(), re.M))
            assert owner in run_by_ci, f"{owner} is not run by scripts/ci_benchmarks.py"
    assert sum(r.gated for r in TARGETS) >= 9


def test_a_run_meeting_every_gate_passes(tmp_path, capsys):
    assert bench_ratios.main([_write(tmp_path, _passing_run())]) == 0
    text = capsys.readouterr().out
    assert "FAIL" not in text and text.count("PASS") == sum(r.gated for r in TARGETS)


@pytest.mark.parametrize("ratio", [r for r in TARGETS if r.gated], ids=lambda r: r.numerator)
def test_each_gate_fails_when_its_ratio_is_on_the_wrong_side(ratio, tmp_path, capsys):
    benches = {b["name"]: b for b in _passing_run()}
    op, bound = ratio.gate.split()
    num = benches[ratio.numerator]
    worse = float(bound) * (1.2 if op.startswith("<") else 0.8) * ratio.multiplier
    den = (benches[ratio.denominator]["stats"]["median"] if ratio.statistic == "median"
           else benches[ratio.denominator]["extra_info"][ratio.statistic][0])
    if ratio.statistic == "median":
        num["stats"]["median"] = worse * den
    else:
        num["extra_info"][ratio.statistic] = [worse * den] * ratio.repeats
    assert bench_ratios.main([_write(tmp_path, list(benches.values()))]) == 1
    assert f"FAILED speed target: {ratio.label}" in capsys.readouterr().out


def test_too_few_repeats_or_a_missing_benchmark_fail(tmp_path, capsys):
    gated = next(r for r in TARGETS if r.gated and r.statistic == "median" and r.repeats >= 3)
    benches = {b["name"]: b for b in _passing_run()}
    benches[gated.numerator]["stats"]["rounds"] = 1
    assert bench_ratios.main([_write(tmp_path, list(benches.values()))]) == 1
    assert f"{gated.label}: 1 repeat(s), the gate needs 3" in capsys.readouterr().out
    benches = {b["name"]: b for b in _passing_run()}
    del benches[gated.denominator]
    assert bench_ratios.main([_write(tmp_path, list(benches.values()))]) == 1
    assert "not measured" in capsys.readouterr().out
    # a per-round list: the median decides, not one slow round
    phase = next(r for r in TARGETS if r.gated and r.statistic not in ("median", "grad_evals"))
    benches = {b["name"]: b for b in _passing_run()}
    values = benches[phase.numerator]["extra_info"][phase.statistic]
    op = phase.gate.split()[0]
    values[0] = values[0] * (100 if op.startswith("<") else 0.01)
    assert bench_ratios.main([_write(tmp_path, list(benches.values()))]) == 0


def test_a_malformed_gate_is_refused(tmp_path):
    bad = tmp_path / "targets.toml"
    bad.write_text('[[ratio]]\nlabel = "x"\nnumerator = "a"\ndenominator = "b"\nstatistic = "median"\n'
                   'target = "<= 1.1"\ngate = "1.3"\nwhy = "typo: no operator"\n')
    with pytest.raises(SystemExit, match="gate '1.3'"):
        bench_ratios.load_targets(bad)

"""scripts/gpu_eval_check.py (issue 13, item 2) on CPU: the GPU run compares evaluate on the device with
the CPU fp32 run; here the "device" is the CPU itself, so fp32 must match the reference exactly and the
bf16 attacks must stay inside their budget with clean predictions unchanged (judged in fp32)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from robustbench_ofa.evaluation.precision import COMPILE_BACKEND_ENV

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gec():
    """The script as a module (scripts/ is no package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gec", ROOT / "scripts" / "gpu_eval_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_compares_each_config_with_the_cpu_reference(tmp_path):
    """bf16-compile runs through AOTAutograd without inductor's C++ build (the same dynamo tracing)."""
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_eval_check.py"), "--device", "cpu",
                           "--configs", "fp32,tf32,bf16,bf16-compile", "--attack", "pgd", "--task", "ve",
                           "--n-samples", "8", "--eps", "8/255", "--sanity-steps", "5", "--json", str(out)],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, COMPILE_BACKEND_ENV: "aot_eager"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| config | evaluate s |" in proc.stdout
    rows = {r["config"]: r for r in json.loads(out.read_text())}
    assert rows["cpu fp32"]["clean_differ"] == 0 and rows["cpu fp32"]["outcomes_differ"] == 0
    assert rows["cpu fp32"]["outcomes_n"] > 0 and rows["cpu fp32"]["checks_differ"] == {}
    assert rows["cpu fp32"]["numbers_differ"] == {} and rows["cpu fp32"]["regress"] == "pass"
    assert any("0 failure(s)" in line for line in rows["cpu fp32"]["regress_log"])
    bf = rows["cpu bf16"]
    assert bf["outcomes_differ"] == bf["robust_only_here"] + bf["fooled_only_here"]
    assert "ok" == rows["cpu fp32"]["status"] and "log" in rows["cpu fp32"]
    assert rows["cpu tf32"]["status"].startswith("skipped")
    assert rows["cpu bf16"]["clean_differ"] == 0 and rows["cpu bf16"]["outside_budget"] == 0
    compiled = rows["cpu bf16-compile"]
    assert compiled["status"] == "ok" and compiled["clean_differ"] == 0 and compiled["outside_budget"] == 0
    assert compiled["compile"]["graphs"] > 0 and compiled["compile"]["limit_reached_in"] == []


def test_unknown_config_is_one_line():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_eval_check.py"), "--configs", "fp8"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "'fp8'" in proc.stderr


@pytest.mark.parametrize("flag", ["--total", "--limit"])
def test_a_time_limit_that_is_not_positive_is_one_line(flag):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_eval_check.py"), flag, "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and f"{flag}: expected a positive" in proc.stderr


def test_total_time_bounds_every_run():
    """``--total`` caps each run by what is left of it (a borrowed GPU's command has 600 s in all)."""
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_eval_check.py"), "--device", "cpu",
                           "--configs", "fp32", "--total", "1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "the CPU reference run no result: over the 1 s limit" in proc.stderr


def test_compare_catches_a_flip_in_each_direction_and_a_moved_check(tmp_path, gec):
    """Deliberately broken copies of one store: each kind of difference is counted where it belongs."""
    import sqlite3

    def store(path, outcomes, check, linf=0.03):
        path.mkdir()
        db = sqlite3.connect(path / "results.sqlite")
        db.execute("CREATE TABLE clean (variant, task, uid, pred, correct)")
        db.execute("CREATE TABLE results (variant, task, attack, norm, eps_label, uid, status, adv_correct, linf, "
                   "l2, eps)")
        db.execute("CREATE TABLE checks (variant, task, name, value)")
        for i, (status, ok) in enumerate(outcomes):
            db.execute("INSERT INTO clean VALUES ('m', 've', ?, 'yes', ?)", (f"u{i}", int(status != "clean-wrong")))
            db.execute("INSERT INTO results VALUES ('m', 've', 'pgd', 'linf', '8/255', ?, ?, ?, ?, 0.5, ?)",
                       (f"u{i}", status, ok, linf, 8 / 255))
        db.execute("INSERT INTO checks VALUES ('m', 've', 'large_eps_robust_acc', ?)", (check,))
        db.commit()
        db.close()
        return path

    ref = store(tmp_path / "ref", [("attacked", 0), ("attacked", 1), ("attacked", 1), ("clean-wrong", 0)], 0.1)
    same = gec.compare(ref, ref)
    assert same["outcomes_differ"] == 0 and same["outcomes_n"] == 3 and same["checks_differ"] == {}
    out = store(tmp_path / "out", [("attacked", 1), ("attacked", 0), ("attacked", 1), ("clean-wrong", 0)], 0.3,
                linf=0.05)
    d = gec.compare(ref, out)
    assert (d["robust_only_here"], d["fooled_only_here"], d["outcomes_differ"]) == (1, 1, 2)
    assert list(d["checks_differ"]) == ["m/ve/large_eps_robust_acc"] and d["outside_budget"] == 4
    assert d["numbers_differ"] == {"m/ve/pgd/linf/8/255": [1, 1]}
    # a row the run did not write differs, in neither direction
    db = sqlite3.connect(out / "results.sqlite")
    db.execute("DELETE FROM results WHERE uid = 'u2'")
    db.commit()
    db.close()
    d = gec.compare(ref, out)
    assert (d["robust_only_here"], d["fooled_only_here"], d["outcomes_differ"]) == (1, 1, 3)
    assert d["numbers_differ"] == {"m/ve/pgd/linf/8/255": [1, 1]}


def test_regress_column_fails_on_two_flips_in_one_number(tmp_path, gec):
    """The ``regress`` column is the issue's tolerance: deliberately broken, a copy of a run with two
    samples of one number turned wrong fails it, and the run itself passes."""
    import shutil
    import sqlite3

    from robustbench_ofa.cli import main

    run = tmp_path / "run"
    assert main(["evaluate", "--model", str(gec.GATE / "gate-base"), "--attack", "pgd", "--task", "ve", "--eps",
                 "8/255", "--steps", "3", "--n-samples", "8", "--no-transfer", "--sanity-samples", "2",
                 "--sanity-steps", "2", "--report", "", "--quiet", "--device", "cpu", "--out", str(run)]) == 0
    baseline = tmp_path / "base.json"
    assert gec._regress(baseline, run, update=True)[0]
    assert gec._regress(baseline, run)[0]  # the run against its own baseline
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    db = sqlite3.connect(broken / "results.sqlite")
    uids = [u for (u,) in db.execute("SELECT uid FROM results WHERE attack = 'pgd' AND adv_correct = 1 "
                                     "ORDER BY uid LIMIT 2")]
    assert len(uids) == 2
    db.executemany("UPDATE results SET adv_correct = 0 WHERE attack = 'pgd' AND uid = ?",
                   [(u,) for u in uids])
    db.commit()
    db.close()
    passed, text = gec._regress(baseline, broken)
    assert not passed and "gate-base|ve|linf|8/255" in text


def test_a_failed_row_names_the_exception_not_torch_hints(gec):
    h100 = json.loads((ROOT / "measurements" / "h100-2026-12-05" / "gpu_eval.json").read_text())[-1]["log"]
    assert gec.failure_line(h100) == "torch._inductor.exc.InductorError: AssertionError:"
    assert gec.failure_line("robust-ofa: error: --device cuda: no CUDA here\n") == (
        "robust-ofa: error: --device cuda: no CUDA here")
    assert gec.failure_line("") == "(no output)"

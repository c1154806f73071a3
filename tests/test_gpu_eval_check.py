"""scripts/gpu_eval_check.py (issue 13, item 2) on CPU: the GPU run compares evaluate on the device with
the CPU fp32 run; here the "device" is the CPU itself, so fp32 must match the reference exactly and the
bf16 attacks must stay inside their budget with clean predictions unchanged (judged in fp32)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_script_compares_each_config_with_the_cpu_reference(tmp_path):
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_eval_check.py"), "--device", "cpu",
                           "--configs", "fp32,tf32,bf16", "--attack", "pgd", "--task", "ve", "--n-samples", "8",
                           "--eps", "8/255", "--sanity-steps", "5", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| config | evaluate s |" in proc.stdout
    rows = {r["config"]: r for r in json.loads(out.read_text())}
    assert rows["cpu fp32"]["clean_differ"] == 0 and rows["cpu fp32"]["outcomes_differ"] == 0
    assert rows["cpu fp32"]["outcomes_n"] > 0
    assert rows["cpu tf32"]["status"].startswith("skipped")
    assert rows["cpu bf16"]["clean_differ"] == 0 and rows["cpu bf16"]["outside_budget"] == 0


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

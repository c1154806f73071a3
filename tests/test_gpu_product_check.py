"""scripts/gpu_product_check.py on CPU with its ``--tiny`` config.

The GPU run happens once, on a borrowed card; this checks here that the script runs the product's own
commands end to end (pretrain, evaluate, train tune, a torchrun evaluate with gloo), writes a row per part
with its throughput, rewrites its JSON and prints the table, and that a part whose command fails is a
failed row while the script carries on.

    OMP_NUM_THREADS=1 pytest tests/test_gpu_product_check.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_product_check.py"
BREAK_ENV = "GPU_PRODUCT_CHECK_BREAK"


def _run(tmp: Path, *extra: str, env_extra: dict | None = None,
         json_name: str = "result.json") -> tuple[subprocess.CompletedProcess, dict | None]:
    out = tmp / json_name
    env = {k: v for k, v in os.environ.items() if k != BREAK_ENV}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **(env_extra or {}))
    proc = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--device", "cpu", "--skip-compile",
                           "--json", str(out), "--work", str(tmp / "work"), *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    return proc, (json.loads(out.read_text()) if out.exists() else None)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu_product_check")
    return tmp, *_run(tmp)


def test_every_part_has_a_row_with_its_throughput(tiny_run):
    _, proc, result = tiny_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["name"]: r for r in result["rows"]}
    expected = ["model pretrain", "data generate + relabel", "micro PGD-10", "evaluate eager vqa",
                "tune finetune", "tune finetune +ckpt", "tune prompt", "tune prompt +ckpt", "nccl torchrun gloo"]
    for name in expected:
        assert rows[name]["status"] == "ok", (name, rows[name]["status"], rows[name]["log"][-2000:])
    for name in expected[2:]:
        assert rows[name]["samples_per_s"] > 0, name
    assert "evaluate eager grounding" in rows  # a random model's boxes may be degenerate: then a failed row
    assert rows["evaluate eager vqa"]["ratio"] > 0  # against the microbenchmark of the same run
    assert rows["tune finetune"]["peak_gib"] > 0
    assert rows["evaluate compile"]["status"].startswith("skipped")
    assert result["flops"]["attack_flops_per_sample"] > 0 and result["flops"]["train_flops_per_sample"] > 0
    assert all(r["mfu"] is None for r in result["rows"])  # no peak for a CPU
    assert result["env"]["git_commit"]


def test_table_and_targets_are_printed(tiny_run):
    _, proc, result = tiny_run
    table = [line for line in proc.stdout.splitlines() if line.startswith("|")]
    assert table[0].startswith("| part | config | samples/s | MFU |") and set(table[1]) <= {"|", "-"}
    assert len(table) == 2 + len(result["rows"])
    assert "Targets: evaluate attack phase >= 80 %" in proc.stdout
    assert proc.stdout.splitlines()[0].startswith("torch ")


def test_a_failing_part_is_a_failed_row_and_the_script_carries_on(tiny_run):
    """Reuses the first run's model and data (--work, no model part): the evaluate row whose command is
    broken on purpose (an unknown option: exit 2) is a failed row, and the next row (the grounding
    evaluation, on the first run's settings and folder: it resumes the finished run) still runs. One part
    only: every part after the first is another process start-up here."""
    tmp = tiny_run[0]
    proc, result = _run(tmp, "--parts", "evaluate", json_name="broken.json",
                        env_extra={BREAK_ENV: "evaluate eager vqa"})
    assert proc.returncode == 0, proc.stderr[-3000:]  # gpu_check.py's convention: the rows carry the outcome
    rows = {r["name"]: r for r in result["rows"]}
    broken = rows["evaluate eager vqa"]
    assert broken["status"].startswith("failed (rc 2)") and "no-such-option-for-the-test" in broken["log"]
    assert broken["samples_per_s"] is None
    after = rows["evaluate eager grounding"]  # carried on after the failed row (its own command, unbroken)
    assert "no-such-option-for-the-test" not in after["log"] and not after["status"].startswith("failed (rc 2)")
    assert "not ok: evaluate eager vqa" in proc.stdout and "| evaluate eager vqa |" in proc.stdout

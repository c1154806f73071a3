"""scripts/gpu_check.py (issue 13, item 3) on CPU with its ``--tiny`` config.

The GPU run happens once, on a borrowed card; this checks here that the script runs end to end, writes
one row per precision and prints the table, and that its FLOPs are counted (they scale with the batch and
match a fresh FlopCounterMode count), not guessed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check") / "result.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--device", "cpu", "--skip-compile",
                           "--json", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return proc, (json.loads(out.read_text()) if out.exists() else None)


@pytest.fixture(scope="module")
def tiny_model(gpu_check):
    torch.manual_seed(0)
    return gpu_check.build_model("base", True, torch.device("cpu"))


def test_script_exits_zero_and_prints_one_table(tiny_run):
    proc, result = tiny_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert result is not None
    table = [line for line in proc.stdout.splitlines() if line.startswith("|")]
    assert table[0].startswith("| measurement | status | samples/s |") and set(table[1]) <= {"|", "-"}
    assert len(table) == 2 + len(result["rows"])
    assert "Anchor (issue 13): OFA-Sys HF port on an H100" in proc.stdout
    assert "torch " in proc.stdout.splitlines()[0]


def test_json_has_a_row_per_precision(tiny_run):
    _, result = tiny_run
    rows = {r["name"]: r for r in result["rows"]}
    for precision in ("fp32", "tf32", "bf16"):
        assert rows[f"fwd+bwd {precision}"]["kind"] == "fwd_bwd"
    assert rows["fwd+bwd tf32"]["status"] == "cuda only"  # TF32 is a CUDA mode
    for name in ("fwd+bwd fp32", "fwd+bwd bf16", "PGD-10 fp32", "PGD-10 bf16", "ResNet stages fwd+bwd bf16",
                 "bf16 fwd+bwd, eager attention"):
        assert rows[name]["status"] == "ok", rows[name]
        assert rows[name]["samples_per_s"] > 0 and rows[name]["ms_per_batch"] > 0
    for row in result["rows"]:  # every measured row: ok and positive, or a recorded reason
        assert row["status"] == "ok" or row["samples_per_s"] is None
        assert row["mfu"] is None  # no peak for a CPU: MFU is "n/a"
    assert result["sdpa"]["MATH"] == "ok"
    assert result["probe"]["default_attention_ops"]  # which attention op a bf16 step runs is recorded
    assert result["config"]["batch"] == 2 and result["config"]["image_size"] == 64


def test_flops_are_counted_and_scale_with_batch(tiny_run, gpu_check, tiny_model):
    _, result = tiny_run
    flops = result["flops"]
    assert flops["per_sample"] > 0 and flops["uncounted_attention_ops"] == []
    assert 0 < flops["resnet_per_sample"] < flops["per_sample"]
    vocab = tiny_model.config.vocab_size
    counts = {b: gpu_check.count_flops(tiny_model, gpu_check.make_inputs(vocab, b, 64, 16, 4, torch.device("cpu")))
              for b in (1, 2)}
    assert counts[2] / 2 == flops["per_sample"]  # the script reports what FlopCounterMode counts
    # Per-sample work doubles with the batch; only the batch-independent position biases are shared.
    assert 1.9 < counts[2] / counts[1] <= 2.0


def test_cpu_flash_attention_flops_are_counted(gpu_check):
    q = torch.randn(2, 4, 10, 8)
    bias = torch.randn(1, 4, 10, 10)
    counter = FlopCounterMode(display=False, custom_mapping=gpu_check._extra_flop_formulas())
    with counter:
        F.scaled_dot_product_attention(q, q, q, attn_mask=bias)
    assert counter.get_total_flops() == 2 * (2 * 2 * 4 * 10 * 10 * 8)  # QK^T and PV, 2 FLOPs per MAC


def test_pgd_keeps_the_image_fp32_in_the_eps_ball(gpu_check, tiny_model):
    inputs = gpu_check.make_inputs(tiny_model.config.vocab_size, 2, 64, 16, 4, torch.device("cpu"))
    adv = gpu_check.pgd(tiny_model, inputs, "bf16", steps=2)
    assert adv.dtype == torch.float32 and not adv.requires_grad
    assert (adv - inputs.pixels).abs().max() <= gpu_check.EPS + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1 and not torch.equal(adv, inputs.pixels)


def test_time_limit_interrupts_python_code(gpu_check):
    """What bounds the torch.compile trial on the GPU (compile itself is off in the CPU run)."""
    t0 = time.perf_counter()
    with pytest.raises(TimeoutError), gpu_check.time_limit(0.2):
        while True:
            time.sleep(0.01)
    assert time.perf_counter() - t0 < 2
    with gpu_check.time_limit(5):
        pass
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0  # the alarm is cancelled on exit

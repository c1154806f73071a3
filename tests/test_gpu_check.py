"""scripts/gpu_check.py (issue 13, item 3) on CPU with its ``--tiny`` config.

The GPU run happens once, on a borrowed card; this checks here that the script runs end to end, writes
one row per precision and prints the table, and that its FLOPs are counted (they scale with the batch and
match a count made here without the script's counter), not guessed.
"""

from __future__ import annotations

import copy
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


def _flops_here(model, result: dict, step: str) -> tuple[int, int]:
    """(FLOPs, encoder length) of one ``step`` ("model": forward+backward of the cross-entropy w.r.t. the
    image; "resnet": the ResNet stages, gradient of their sum) on inputs of the run's shapes, counted by
    FlopCounterMode's own formulas: no code of the script's."""
    cfg = result["config"]
    b, size, t_text, t_dec = cfg["batch"], cfg["image_size"], cfg["text_len"], cfg["dec_len"]
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(4, vocab, (b, t_text), generator=g)
    ids[:, 0], ids[:, -1] = 0, 2
    dec = torch.randint(4, vocab, (b, t_dec), generator=g)
    dec[:, 0] = 0
    targets = torch.randint(4, vocab, (b, t_dec), generator=g)
    x = (torch.rand(b, 3, size, size, generator=g) * 2 - 1).requires_grad_(True)
    counter = FlopCounterMode(display=False)
    with counter:
        if step == "resnet":
            feats = model.encoder.embed_images(x)
            feats.backward(torch.ones_like(feats))
        else:
            out = model(input_ids=ids, patch_images=x, decoder_input_ids=dec)
            F.cross_entropy(out.logits.float().flatten(0, 1), targets.flatten()).backward()
    src = 0 if step == "resnet" else out.encoder_last_hidden_state.shape[1]
    return counter.get_total_flops(), src


def test_flops_match_a_count_made_without_the_scripts_counter(tiny_run, tiny_model):
    """The script's FLOPs against a count made here: FlopCounterMode's formulas over the same model with the
    attention written out (``eager``: QK^T and PV are plain matmuls, which it counts), plus by hand what the
    fused CPU attention (which the script runs and counts) does beyond that. Its backward recomputes the
    scores (one QK^T of 2*B*Tq*Tk*d FLOPs per differentiated attention: the encoder's self-attention, the
    decoder's cross-attention) and computes the query gradient even where no query needs one (the
    decoder's cross-attention: another 2*B*Tq*Tk*d); the decoder's self-attention sees no gradient at all
    (the weights are frozen). A counter that misses or miscounts the fused attention, counts the forward
    only or divides by another batch fails here; before, the script was compared with its own counter."""
    _, result = tiny_run
    flops, cfg = result["flops"], result["config"]
    model = copy.deepcopy(tiny_model)
    model.set_attention_impl("eager")
    eager, src = _flops_here(model, result, "model")
    c, b, t_dec = model.config, cfg["batch"], cfg["dec_len"]
    fused_extra = c.encoder_layers * 2 * b * src * src * c.d_model + c.decoder_layers * 2 * (2 * b * t_dec * src * c.d_model)
    assert flops["per_sample"] * b == eager + fused_extra and flops["uncounted_attention_ops"] == []
    assert flops["resnet_per_sample"] * b == _flops_here(model, result, "resnet")[0]
    assert 0 < flops["resnet_per_sample"] < flops["per_sample"]


def test_flops_scale_with_the_batch(gpu_check, tiny_model):
    """Per-sample work doubles with the batch; only the batch-independent position biases are shared."""
    vocab = tiny_model.config.vocab_size
    counts = {b: gpu_check.count_flops(tiny_model, gpu_check.make_inputs(vocab, b, 64, 16, 4, torch.device("cpu")))
              for b in (1, 2)}
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

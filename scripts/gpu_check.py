"""One-shot GPU check (issue 13, item 3): speed, memory and MFU of an OFA-base-shaped model's attack step.

Why: an image attack spends nearly all its time in forward+backward passes with respect to the image, so
what a GPU run costs is decided by that step's samples/s in fp32, tf32 and bf16, by PGD-10's samples/s, by
the share of the ResNet stages, by which SDPA kernel the attention bias lets through and by whether
``torch.compile`` helps. The weights are random (speed does not depend on their values). FLOPs are counted
by ``torch.utils.flop_counter.FlopCounterMode`` over one real pass, never estimated; MFU is achieved
FLOP/s over the card's dense bf16 peak, for the fp32/tf32 rows too, so that all rows compare.

    python scripts/gpu_check.py --json gpu_check.json                 # the GPU run (a few minutes)
    python scripts/gpu_check.py --tiny --device cpu --skip-compile    # seconds: the CPU test's config

Progress lines are printed (flushed) as it goes, then one Markdown table and the issue's reference figures
under it; with ``--json`` the results are also rewritten to that file after every measurement, so a run cut
short still leaves what it measured. A part that fails is recorded in the table and the script carries on.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import platform
import signal
import statistics
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # a plain checkout (the GPU machine) has no editable install
    sys.path.insert(0, str(ROOT))

from robustbench_ofa.evaluation.precision import tf32_flags  # noqa: E402
from robustbench_ofa.models import OFAConfig, OFAModel  # noqa: E402
from robustbench_ofa.models.config import SIZE_PRESETS  # noqa: E402

T_START = time.perf_counter()

ANCHOR = ("OFA-Sys HF port on an H100, OFA-base, 480 px, batch 32, fwd+bwd wrt image: fp32 61 samples/s, "
          "tf32 103, bf16 110 (~40 TFLOP/s, ~5 % of bf16 peak; 367 GFLOP per sample)")
ANCHOR_BF16_SAMPLES_PER_S = 110.0
ANCHOR_GFLOP_PER_SAMPLE = 367.0
ANCHOR_RESNET_SHARE = 0.18
#: Dense bf16 peak in TFLOP/s (SXM datasheet) by a substring of ``torch.cuda.get_device_name()``.
PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4}
#: The published OFA vocabulary (text BPE + 1000 location bins + image codes).
OFA_VOCAB = 59457
PRECISIONS = ("fp32", "tf32", "bf16")
SDPA_BACKENDS = ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH")
EPS = 8 / 255
#: ``--tiny``: a micro model in the shape of tests/conftest.py's configs, seconds on one CPU thread.
TINY_MODEL = dict(vocab_size=400, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                  decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, resnet_layers=[1, 1, 1],
                  resnet_base_planes=8, max_position_embeddings=64)
#: Defaults of the sizing options: (full run, ``--tiny``).
SIZING = {"image_size": (480, 64), "batch": (32, 2), "iters": (10, 1), "warmup": (3, 0), "pgd_iters": (2, 1)}


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T_START:6.1f} s] {msg}", flush=True)


def short(exc: BaseException, limit: int = 110) -> str:
    """One-line description of an error, for a table cell."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:limit].rstrip()


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise ``TimeoutError`` in the block after ``seconds`` (SIGALRM; no limit off the main thread).

    Python code (dynamo, inductor's orchestration, waits on compiler subprocesses) stops at its next
    bytecode; a C call in progress finishes first.
    """
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise TimeoutError(f"over the {seconds:.0f} s limit")

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- model and inputs -------------------------------------------------------------------------------------
@dataclass
class Inputs:
    """One batch: text ids, fp32 images in [0, 1], decoder ids and the cross-entropy targets."""

    ids: torch.Tensor
    pixels: torch.Tensor
    dec: torch.Tensor
    targets: torch.Tensor

    @property
    def size(self) -> int:
        return self.ids.shape[0]


def build_model(size: str, tiny: bool, device: torch.device) -> OFAModel:
    """Random-weight OFA in eval mode with frozen weights (gradients flow to the image only)."""
    config = OFAConfig(**TINY_MODEL) if tiny else OFAConfig.from_size(size, vocab_size=OFA_VOCAB)
    model = OFAModel(config).eval()
    model.requires_grad_(False)
    return model.to(device)


def make_inputs(vocab: int, batch: int, image_size: int, text_len: int, dec_len: int,
                device: torch.device, seed: int = 0) -> Inputs:
    """Random ids without padding (bos first, eos last), random images, bos-led decoder ids (e.g. 4 bins)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, vocab, (batch, text_len), generator=g)
    ids[:, 0], ids[:, -1] = 0, 2
    dec = torch.randint(4, vocab, (batch, dec_len), generator=g)
    dec[:, 0] = 0
    targets = torch.randint(4, vocab, (batch, dec_len), generator=g)
    pixels = torch.rand(batch, 3, image_size, image_size, generator=g)
    return Inputs(ids.to(device), pixels.to(device), dec.to(device), targets.to(device))


# -- precisions and steps ---------------------------------------------------------------------------------
def autocast(precision: str, device_type: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())


def fwd_bwd(model: torch.nn.Module, inputs: Inputs, precision: str) -> torch.Tensor:
    """Forward+backward w.r.t. the fp32 image (normalised to [-1, 1]); the gradient stays fp32."""
    x = (inputs.pixels * 2 - 1).requires_grad_(True)
    with autocast(precision, x.device.type):
        logits = model(input_ids=inputs.ids, patch_images=x, decoder_input_ids=inputs.dec).logits
    _loss(logits, inputs.targets).backward()  # not autograd.grad: FlopCounterMode's module hooks refuse it
    return x.grad


def resnet_fwd_bwd(model: OFAModel, inputs: Inputs, precision: str) -> torch.Tensor:
    """The ResNet stages alone (``encoder.embed_images``), forward+backward w.r.t. the same images."""
    x = (inputs.pixels * 2 - 1).requires_grad_(True)
    with autocast(precision, x.device.type):
        feats = model.encoder.embed_images(x)
    feats.backward(torch.ones_like(feats))
    return x.grad


def pgd(model: torch.nn.Module, inputs: Inputs, precision: str, steps: int, eps: float = EPS) -> torch.Tensor:
    """L-inf PGD (random start, sign-gradient ascent of the cross-entropy, step eps/4) in [0, 1] pixels.

    The adversarial image stays fp32 and inside the eps ball and [0, 1]; the loop itself never reads a
    value back to the host (the model's own input checks still do: see the host-sync line of the report).
    """
    clean = inputs.pixels
    lo, hi = (clean - eps).clamp(min=0), (clean + eps).clamp(max=1)
    adv = torch.clamp(clean + torch.empty_like(clean).uniform_(-eps, eps), lo, hi)
    for _ in range(steps):
        adv.requires_grad_(True)
        with autocast(precision, adv.device.type):
            logits = model(input_ids=inputs.ids, patch_images=(adv - 0.5) / 0.5, decoder_input_ids=inputs.dec).logits
        (grad,) = torch.autograd.grad(_loss(logits, inputs.targets), adv)
        adv = torch.clamp(adv.detach() + (eps / 4) * grad.sign(), lo, hi)
    return adv


# -- FLOP counting and op recording -------------------------------------------------------------------------
class OpRecorder(TorchDispatchMode):
    """Names of the attention ops that actually run (seen after autocast and composite decompositions)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: dict[Any, None] = {}  # op packet -> None, in first-seen order

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        packet = func.overloadpacket
        if "attention" in packet.__name__:
            self.ops.setdefault(packet, None)
        return func(*args, **(kwargs or {}))

    def names(self) -> list[str]:
        return [p.__name__ for p in self.ops]


def _extra_flop_formulas() -> dict:
    """FLOP formulas for the CPU flash-attention ops, which FlopCounterMode does not know (as of torch 2.13)."""
    from torch.utils import flop_counter

    aten = torch.ops.aten
    fwd, bwd = (getattr(flop_counter, n, None) for n in ("sdpa_flop_count", "sdpa_backward_flop_count"))
    extra: dict = {}
    for name, formula in (("_scaled_dot_product_flash_attention_for_cpu", fwd),
                          ("_scaled_dot_product_flash_attention_for_cpu_backward", bwd)):
        op = getattr(aten, name, None)
        if op is None or formula is None or op in flop_counter.flop_registry:
            continue
        if name.endswith("backward"):
            extra[op] = lambda grad, q, k, v, *args, out_shape=None, _f=formula, **kw: _f(grad, q, k, v)
        else:
            extra[op] = lambda q, k, v, *args, out_shape=None, _f=formula, **kw: _f(q, k, v)
    return extra


def count_step_flops(step: Callable[[], object]) -> tuple[int, list[str]]:
    """FLOPs of one call of ``step`` and the attention ops that ran without a FLOP formula (uncounted)."""
    counter = FlopCounterMode(display=False, custom_mapping=_extra_flop_formulas())
    recorder = OpRecorder()
    with counter, recorder:
        step()
    registry = getattr(counter, "flop_registry", {})
    return counter.get_total_flops(), [p.__name__ for p in recorder.ops if p not in registry]


def count_flops(model: torch.nn.Module, inputs: Inputs, precision: str = "fp32") -> int:
    """FLOPs of one forward+backward w.r.t. the image for the whole batch (divide by the batch size)."""
    with tf32_flags(True):
        return count_step_flops(lambda: fwd_bwd(model, inputs, precision))[0]


# -- measurement --------------------------------------------------------------------------------------------
@dataclass
class Row:
    name: str
    kind: str
    precision: str
    status: str = "ok"
    samples_per_s: float | None = None
    ms_per_batch: float | None = None
    peak_mem_gib: float | None = None
    tflops: float | None = None
    mfu: float | None = None
    note: str = ""


@dataclass
class Bench:
    """Runs timed measurements, keeps the rows and the report dict, and rewrites the JSON as it goes."""

    device: torch.device
    iters: int
    warmup: int
    peak_tflops: float | None
    budget_s: float
    json_path: Path | None
    rows: list[Row] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def elapsed(self) -> float:
        return time.perf_counter() - T_START

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def cleanup(self) -> None:
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        parts = [f"{row.name}: {row.status}"]
        if row.samples_per_s is not None:
            parts.append(f"{row.samples_per_s:.2f} samples/s, {row.ms_per_batch:.1f} ms/batch")
        if row.peak_mem_gib is not None:
            parts.append(f"peak {row.peak_mem_gib:.2f} GiB")
        if row.mfu is not None:
            parts.append(f"MFU {100 * row.mfu:.1f} %")
        log(", ".join(parts) + (f" ({row.note})" if row.note else ""))
        self.write_json()
        return row

    def write_json(self) -> None:
        if self.json_path is not None:
            data = {**self.report, "rows": [asdict(r) for r in self.rows]}
            self.json_path.write_text(json.dumps(data, indent=2, default=str) + "\n")

    def measure(self, name: str, kind: str, precision: str, step: Callable[[], object], samples: int,
                flops_per_sample: float | None, iters: int | None = None, warmup: int | None = None,
                note: str = "") -> Row:
        """Median time of ``step`` over ``iters`` synchronised calls after ``warmup`` calls."""
        row = Row(name, kind, precision, note=note)
        if self.elapsed() > self.budget_s:
            row.status = f"skipped: past the {self.budget_s:.0f} s budget"
            return self.add(row)
        iters = self.iters if iters is None else iters
        warmup = self.warmup if warmup is None else warmup
        try:
            with tf32_flags(precision != "fp32"):
                self.cleanup()
                if self.cuda:
                    torch.cuda.reset_peak_memory_stats(self.device)
                for _ in range(warmup):
                    step()
                self.sync()
                times = []
                for _ in range(max(1, iters)):
                    t0 = time.perf_counter()
                    step()
                    self.sync()
                    times.append(time.perf_counter() - t0)
            median = statistics.median(times)
            row.samples_per_s = samples / median
            row.ms_per_batch = 1000 * median
            if self.cuda:
                row.peak_mem_gib = torch.cuda.max_memory_allocated(self.device) / 2**30
            if flops_per_sample:
                row.tflops = row.samples_per_s * flops_per_sample / 1e12
                if self.peak_tflops:
                    row.mfu = row.tflops / self.peak_tflops
        except Exception as exc:  # recorded in the table; the other measurements still run
            row.status = f"failed: {short(exc)}"
        self.cleanup()
        return self.add(row)


# -- the sections ------------------------------------------------------------------------------------------
def section_flops(bench: Bench, model: OFAModel, inputs: Inputs, precision: str) -> dict[str, Any]:
    """Count the full step and the ResNet stages once (whole batch, on the device in use)."""
    with tf32_flags(True):
        total, uncounted = count_step_flops(lambda: fwd_bwd(model, inputs, precision))
        resnet, _ = count_step_flops(lambda: resnet_fwd_bwd(model, inputs, precision))
    flops = {"counted_with": "torch.utils.flop_counter.FlopCounterMode", "precision": precision,
             "batch": inputs.size, "per_batch": total, "per_sample": total / inputs.size,
             "resnet_per_batch": resnet, "resnet_per_sample": resnet / inputs.size,
             "resnet_share": resnet / total if total else None, "uncounted_attention_ops": uncounted}
    log(f"FLOPs per sample (fwd+bwd wrt image): {total / inputs.size / 1e9:.3f} GFLOP, ResNet stages "
        f"{resnet / inputs.size / 1e9:.3f} GFLOP" + (f"; no formula for {uncounted}" if uncounted else ""))
    return flops


def section_probe(bench: Bench, model: OFAModel, inputs: Inputs) -> dict[str, Any]:
    """One untimed bf16 step: which attention ops run by default, and (CUDA) how many host syncs it makes."""
    probe: dict[str, Any] = {"default_attention_ops": None, "host_syncs_per_step": None}
    try:
        with tf32_flags(True), OpRecorder() as recorder:
            fwd_bwd(model, inputs, "bf16")
        probe["default_attention_ops"] = recorder.names()
    except Exception as exc:
        probe["default_attention_ops"] = f"failed: {short(exc)}"
    if bench.cuda:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    fwd_bwd(model, inputs, "bf16")
                finally:
                    torch.cuda.set_sync_debug_mode("default")
            probe["host_syncs_per_step"] = sum("synchroniz" in str(w.message).lower() for w in caught)
        except Exception as exc:
            probe["host_syncs_per_step"] = f"failed: {short(exc)}"
    log(f"bf16 default attention ops: {probe['default_attention_ops']}; host syncs per fwd+bwd: "
        f"{probe['host_syncs_per_step']}")
    return probe


def _refusal(exc: BaseException, caught: list[warnings.WarningMessage]) -> str:
    """The reasons SDPA gave (as warnings) for refusing a backend, else the error itself."""
    reasons = []
    for w in caught:
        text = " ".join(str(w.message).split())
        relevant = any(k in text.lower() for k in ("attention", "kernel", "support", "sdp"))
        if relevant and not text.endswith("because:") and text not in reasons:
            reasons.append(text)
    return ("; ".join(reasons) or short(exc))[:160]


def section_sdpa(bench: Bench, model: OFAModel, inputs: Inputs, flops: float | None) -> dict[str, str]:
    """bf16 step with SDPA restricted to one backend at a time: refused (and why) or timed."""
    results: dict[str, str] = {}
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError as exc:
        bench.add(Row("bf16 fwd+bwd, SDPA backend check", "sdpa", "bf16", status=f"failed: {short(exc)}"))
        return {"error": short(exc)}
    iters = max(1, bench.iters // 2)
    for name in SDPA_BACKENDS:
        label = f"bf16 fwd+bwd, SDPA only {name}"
        backend = getattr(SDPBackend, name, None)
        if backend is None:
            results[name] = "not in this torch"
            bench.add(Row(label, "sdpa", "bf16", status="n/a: not in this torch"))
            continue

        def step(backend=backend) -> torch.Tensor:
            with sdpa_kernel([backend]):
                return fwd_bwd(model, inputs, "bf16")

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                with tf32_flags(True), OpRecorder() as recorder:
                    step()
                bench.sync()
            except Exception as exc:
                results[name] = f"refused: {_refusal(exc, caught)}"
                bench.add(Row(label, "sdpa", "bf16", status=results[name]))
                bench.cleanup()
                continue
        results[name] = "ok"
        bench.measure(label, "sdpa", "bf16", step, inputs.size, flops, iters=iters, warmup=min(1, bench.warmup),
                      note="ops: " + (", ".join(recorder.names()) or "none (math path: matmul + softmax)"))
    return results


def section_compile(bench: Bench, model: OFAModel, inputs: Inputs, flops: float | None,
                    timeout: float) -> dict[str, Any]:
    """bf16 step through ``torch.compile(model)``: first-call (compile) wall time, graph breaks, speed.

    The first call and the timed calls each run under ``time_limit(timeout)``: a compile that outlives it
    is interrupted and recorded as a failure, so the table still gets printed.
    """
    label = "bf16 fwd+bwd, torch.compile"
    info: dict[str, Any] = {"compile_s": None, "graph_breaks": None, "status": None}
    if bench.elapsed() + timeout > bench.budget_s:
        info["status"] = f"skipped: {bench.elapsed():.0f} s + {timeout:.0f} s timeout > {bench.budget_s:.0f} s budget"
        bench.add(Row(label, "compile", "bf16", status=info["status"]))
        return info
    import torch._dynamo

    torch._dynamo.reset()
    log(f"torch.compile: first call (compiles forward and backward; limit {timeout:.0f} s) ...")
    t0 = time.perf_counter()
    try:
        compiled = torch.compile(model)
        with time_limit(timeout), tf32_flags(True):
            fwd_bwd(compiled, inputs, "bf16")
            bench.sync()
    except Exception as exc:
        info["compile_s"] = time.perf_counter() - t0
        info["status"] = f"failed after {info['compile_s']:.0f} s: {short(exc)}"
        bench.add(Row(label, "compile", "bf16", status=info["status"]))
        with contextlib.suppress(Exception):
            torch._dynamo.reset()
        bench.cleanup()
        return info
    info["compile_s"] = time.perf_counter() - t0
    with contextlib.suppress(Exception):
        from torch._dynamo.utils import counters

        info["graph_breaks"] = sum(counters["graph_break"].values())
    note = f"first call {info['compile_s']:.0f} s, {info['graph_breaks']} graph breaks"
    with time_limit(timeout):
        row = bench.measure(label, "compile", "bf16", lambda: fwd_bwd(compiled, inputs, "bf16"), inputs.size,
                            flops, note=note)
    info["status"] = row.status
    with contextlib.suppress(Exception):
        torch._dynamo.reset()
    return info


# -- report --------------------------------------------------------------------------------------------------
def _cell(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def markdown_table(rows: list[Row]) -> str:
    head = ["measurement", "status", "samples/s", "ms/batch", "peak mem (GiB)", "TFLOP/s",
            "MFU (every row vs dense bf16 peak)", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.name, r.status, _cell(r.samples_per_s, ".2f"), _cell(r.ms_per_batch, ".1f"),
                 _cell(r.peak_mem_gib, ".2f"), _cell(r.tflops, ".3g"),
                 "n/a" if r.mfu is None else f"{100 * r.mfu:.1f} %", r.note]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def reference_lines(report: dict[str, Any], rows: list[Row]) -> list[str]:
    flops = report.get("flops") or {}
    by_name = {r.name: r for r in rows}
    bf16 = by_name.get("fwd+bwd bf16")
    resnet = by_name.get("ResNet stages fwd+bwd bf16")
    lines = [f"Anchor (issue 13): {ANCHOR}"]
    if bf16 is not None and bf16.samples_per_s:
        ratio = bf16.samples_per_s / ANCHOR_BF16_SAMPLES_PER_S
        lines.append(f"bf16 fwd+bwd vs anchor: {bf16.samples_per_s:.1f} / {ANCHOR_BF16_SAMPLES_PER_S:.0f} samples/s "
                     f"= {ratio:.2f}x (anchor card: H100; the H200 has the same compute peak)")
        report["bf16_vs_anchor"] = ratio
    if flops.get("per_sample"):
        lines.append(f"FLOPs per sample, counted ({flops['counted_with']}, one fwd+bwd wrt image, batch "
                     f"{flops['batch']}): {flops['per_sample'] / 1e9:.3f} GFLOP (anchor {ANCHOR_GFLOP_PER_SAMPLE:.0f}); "
                     f"ResNet stages {flops['resnet_per_sample'] / 1e9:.3f} GFLOP "
                     f"({100 * flops['resnet_share']:.0f} % of the FLOPs)"
                     + (f"; attention ops without a FLOP formula: {flops['uncounted_attention_ops']}"
                        if flops.get("uncounted_attention_ops") else ""))
    if bf16 is not None and resnet is not None and bf16.ms_per_batch and resnet.ms_per_batch:
        share = resnet.ms_per_batch / bf16.ms_per_batch
        report["resnet_time_share_bf16"] = share
        lines.append(f"ResNet stages share of the bf16 step: {100 * share:.0f} % of the time "
                     f"(anchor {100 * ANCHOR_RESNET_SHARE:.0f} %)")
    probe = report.get("probe") or {}
    sdpa = report.get("sdpa") or {}
    lines.append(f"SDPA: ops in a default bf16 step: {probe.get('default_attention_ops')}; backends alone: "
                 + ", ".join(f"{k} {v}" for k, v in sdpa.items()))
    lines.append(f"Host syncs in one bf16 fwd+bwd (CUDA sync debug mode): {probe.get('host_syncs_per_step')}")
    return lines


# -- main ------------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="base", choices=list(SIZE_PRESETS), help="OFA size preset (random weights)")
    p.add_argument("--tiny", action="store_true", help="micro model, 64 px, batch 2, 1 iteration (CPU test)")
    p.add_argument("--image-size", type=int, default=None, help="image side in px (default 480; 64 with --tiny)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default 32; 2 with --tiny)")
    p.add_argument("--text-len", type=int, default=16, help="encoder text tokens")
    p.add_argument("--dec-len", type=int, default=4, help="decoder tokens (grounding's 4 box bins)")
    p.add_argument("--iters", type=int, default=None, help="timed iterations (default 10; 1 with --tiny)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up iterations (default 3; 0 with --tiny)")
    p.add_argument("--pgd-steps", type=int, default=10, help="PGD iterations per attack")
    p.add_argument("--pgd-iters", type=int, default=None, help="timed PGD attacks (default 2; 1 with --tiny)")
    p.add_argument("--precisions", default=",".join(PRECISIONS), help="comma-separated subset of fp32,tf32,bf16")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="dense bf16 peak for MFU (default from the device name: H100/H200 989.4, else none)")
    p.add_argument("--compile", dest="compile", action="store_true", default=None,
                   help="time torch.compile (default: on with CUDA, off on CPU)")
    p.add_argument("--skip-compile", dest="compile", action="store_false", help="do not try torch.compile")
    p.add_argument("--compile-timeout", type=float, default=150.0,
                   help="interrupt the compile (first compiled call) after this many seconds: a failure")
    p.add_argument("--budget-s", type=float, default=280.0,
                   help="skip measurements that would start after this many seconds")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's; 1 with --tiny)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    for name, (full, tiny) in SIZING.items():
        if getattr(args, name) is None:
            setattr(args, name, tiny if args.tiny else full)
    if args.threads is None and args.tiny:
        args.threads = 1
    args.precisions = [s.strip() for s in args.precisions.split(",") if s.strip()]
    unknown = sorted(set(args.precisions) - set(PRECISIONS))
    if unknown:
        p.error(f"--precisions: unknown {unknown}; expected a subset of {','.join(PRECISIONS)}")
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.compile is None:
        args.compile = args.device.startswith("cuda")
    return args


def environment(device: torch.device, peak: float | None, peak_source: str) -> dict[str, Any]:
    env: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
                           "device": str(device), "peak_bf16_tflops": peak, "peak_source": peak_source,
                           "cudnn_benchmark": torch.backends.cudnn.benchmark}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(device_name=torch.cuda.get_device_name(device), capability=f"{props.major}.{props.minor}",
                   device_memory_gib=round(props.total_memory / 2**30, 1), cudnn=torch.backends.cudnn.version(),
                   multiprocessors=props.multi_processor_count)
    else:
        env.update(device_name=platform.processor() or platform.machine(), threads=torch.get_num_threads())
    return env


def default_peak(device: torch.device, override: float | None) -> tuple[float | None, str]:
    if override is not None:
        return override, "--peak-tflops"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, tflops in PEAK_BF16_TFLOPS.items():
            if key in name:
                return tflops, f"device name {name!r} (dense bf16, SXM spec)"
        return None, f"unknown card {name!r}: pass --peak-tflops"
    return None, "no peak for a CPU"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    peak, peak_source = default_peak(device, args.peak_tflops)
    env = environment(device, peak, peak_source)
    print(f"torch {env['torch']} | CUDA {env['cuda']} | python {env['python']} | device {device}: "
          f"{env['device_name']}" + (f" (cc {env['capability']}, {env['device_memory_gib']} GiB, cuDNN "
                                     f"{env['cudnn']})" if device.type == "cuda" else "")
          + f" | dense bf16 peak: {'n/a' if peak is None else f'{peak} TFLOP/s'} ({peak_source})", flush=True)

    bench = Bench(device, args.iters, args.warmup, peak, args.budget_s, Path(args.json) if args.json else None)
    model = build_model(args.size, args.tiny, device)
    cfg = model.config
    inputs = make_inputs(cfg.vocab_size, args.batch, args.image_size, args.text_len, args.dec_len, device)
    n_params = sum(p.numel() for p in model.parameters())
    config = {"size": "tiny-micro" if args.tiny else args.size, "d_model": cfg.d_model,
              "layers": [cfg.encoder_layers, cfg.decoder_layers], "resnet_layers": cfg.backbone_layers(),
              "resnet_base_planes": cfg.resnet_base_planes, "vocab_size": cfg.vocab_size, "params": n_params,
              "image_size": args.image_size, "batch": args.batch, "text_len": args.text_len,
              "dec_len": args.dec_len, "iters": args.iters, "warmup": args.warmup, "pgd_steps": args.pgd_steps,
              "pgd_iters": args.pgd_iters, "pgd_eps": EPS, "precisions": args.precisions}
    bench.report.update(env=env, config=config, anchor=ANCHOR)
    log(f"model {config['size']}: {n_params / 1e6:.1f} M params, d_model {cfg.d_model}, layers "
        f"{cfg.encoder_layers}+{cfg.decoder_layers}, ResNet {cfg.backbone_layers()}, vocab {cfg.vocab_size}; "
        f"{args.image_size} px, batch {args.batch}, text {args.text_len} + decoder {args.dec_len} tokens")

    count_precision = "bf16" if bench.cuda and "bf16" in args.precisions else "fp32"
    try:
        bench.report["flops"] = section_flops(bench, model, inputs, count_precision)
    except Exception as exc:
        bench.report["flops"] = {"error": short(exc)}
        log(f"FLOP counting failed: {short(exc)}")
    per_sample = bench.report["flops"].get("per_sample")
    resnet_per_sample = bench.report["flops"].get("resnet_per_sample")

    for precision in args.precisions:
        name = f"fwd+bwd {precision}"
        if precision == "tf32" and not bench.cuda:
            bench.add(Row(name, "fwd_bwd", precision, status="cuda only"))
            continue
        bench.measure(name, "fwd_bwd", precision, lambda p=precision: fwd_bwd(model, inputs, p), inputs.size,
                      per_sample, note="autocast bf16, image fp32" if precision == "bf16" else "")
    if "bf16" in args.precisions:
        bench.measure("ResNet stages fwd+bwd bf16", "resnet", "bf16", lambda: resnet_fwd_bwd(model, inputs, "bf16"),
                      inputs.size, resnet_per_sample, note="encoder.embed_images alone")

    pgd_flops = per_sample * args.pgd_steps if per_sample else None
    for precision in ("bf16", "fp32"):
        if precision in args.precisions:
            bench.measure(f"PGD-{args.pgd_steps} {precision}", "pgd", precision,
                          lambda p=precision: pgd(model, inputs, p, args.pgd_steps), inputs.size, pgd_flops,
                          iters=args.pgd_iters, warmup=min(1, args.warmup),
                          note=f"eps 8/255, step 2/255; samples/s of whole {args.pgd_steps}-step attacks")

    bench.report["probe"] = section_probe(bench, model, inputs)
    bench.report["sdpa"] = section_sdpa(bench, model, inputs, per_sample)
    try:
        model.set_attention_impl("eager")
        bench.measure("bf16 fwd+bwd, eager attention", "attn_impl", "bf16", lambda: fwd_bwd(model, inputs, "bf16"),
                      inputs.size, per_sample, iters=max(1, args.iters // 2), warmup=min(1, args.warmup),
                      note="softmax(QK^T + bias)V written out; compare with fwd+bwd bf16 (sdpa)")
    finally:
        model.set_attention_impl("sdpa")
    if args.compile:
        bench.report["compile"] = section_compile(bench, model, inputs, per_sample, args.compile_timeout)
    else:
        bench.add(Row("bf16 fwd+bwd, torch.compile", "compile", "bf16", status="skipped (--skip-compile / CPU)"))

    print()
    print(markdown_table(bench.rows))
    print()
    for line in reference_lines(bench.report, bench.rows):
        print(line)
    bench.report["total_s"] = bench.elapsed()
    bench.write_json()
    print(f"\ntotal {bench.elapsed():.1f} s" + (f"; JSON: {args.json}" if args.json else ""), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

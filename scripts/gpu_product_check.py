"""One-shot GPU check of the PRODUCT's own commands: ``robust-ofa evaluate`` and ``robust-ofa train tune``.

Why: ``scripts/gpu_check.py`` times a hand-written PGD loop (a microbenchmark). What a user pays for is the
CLI: ``evaluate --attack pgd`` (batching, the results store, predictions, the cascade, ``--compile``) and
``train tune`` (data, micro-batches, bf16, activation checkpointing). This script runs those commands as
subprocesses, each under a time limit, on an OFA-base-shaped model that the project's own
``train pretrain`` makes (1 step: random-ish weights; speed does not depend on their values), and puts
their throughput next to the microbenchmark's PGD-10 rate measured in the same run on the same shape.

    python scripts/gpu_product_check.py --json gpu_product.json            # one H100: at most ~8 minutes
    python scripts/gpu_product_check.py --tiny --device cpu --skip-compile  # the CPU test's config (seconds)
    pytest tests/test_gpu_product_check.py                                  # the CPU test (~110 s on 1 thread)

Parts (a row each, recorded even when the part fails: the row says what failed and keeps its output's tail;
``--json`` is rewritten after every row; the exit status is 0 whatever the rows say, as in gpu_check.py):

1. model: ``train pretrain --arch base --steps 1 --image-size 480 --task vqa,grounding`` with a 3,129-answer
   VQA set (``--answers``: the generator's answers, ``robustbench_ofa.data.synthetic.VQA_ANSWERS``, then
   ``filler answer NNNN`` lines up to 3,129, as OFA's VQAv2 set is large). data: the generator's
   ``downstream_test`` samples at 480 px written as manifests (``write_manifest``). A random model gets
   ~0 % clean, and evaluate attacks only clean-correct samples, so a first ``evaluate`` pass reads the
   model's clean predictions and the manifests are relabelled with them (every VQA sample, and every
   grounding sample whose predicted box has an area, becomes clean-correct, hence attacked).
2. micro: gpu_check's PGD-10 (``gpu_check.pgd``) on the same config, and FlopCounterMode counts of one
   fwd+bwd w.r.t. the image (attack step) and one training fwd+bwd with weight gradients (text 16, decoder
   4 tokens: grounding's 4 bins; an approximation of the tasks' lengths).
3. evaluate: ``evaluate --attack pgd --steps 10 --no-early-stop`` per task, bf16, eager and ``--compile``.
   The attack phase = the results rows with status ``attacked``: their ``seconds`` (the attack and the
   adversarial prediction) and ``grad_evals`` (fwd+bwd passes). MFU = attack-step FLOPs x passes / seconds /
   the card's dense bf16 peak; ratio = attacked samples/s / the microbenchmark's PGD-10 samples/s.
4. tune: ``train tune --method finetune`` and ``--method prompt --hparam length=100`` (encoder and decoder
   prompts: the method's default depth ``both``), without and with ``--activation-checkpointing``; the last
   ``metrics.jsonl`` window (log-every = steps/2: the first window holds the warm-up). MFU of finetune uses
   the training count; of prompt the attack-step count (fwd+bwd without weight gradients; the 100 prompt
   keys/values are not counted): an approximation.
5. nccl: ``python -m torch.distributed.run --standalone --nproc-per-node 1 -m robustbench_ofa evaluate``
   (NCCL on CUDA; with ``--device cpu`` gloo): ok when its summary records the distributed run.

Targets printed next to the numbers: evaluate's attack phase >= 80 % of the microbenchmark's PGD rate;
compiled evaluation >= 15 % MFU; training >= 15 % MFU in bf16. Never a CI dependency.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # a plain checkout (the GPU machine) has no editable install
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402


def _load_script(name: str, filename: str):
    """A sibling script as a module (scripts/ is no package); registered so its dataclasses work."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent / filename)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


gpu_check = _load_script("gpu_check_for_product_check", "gpu_check.py")
gpu_eval_check = _load_script("gpu_eval_check_for_product_check", "gpu_eval_check.py")

log = gpu_check.log
TASKS = ("vqa", "grounding")
N_ANSWERS = 3129
PARTS = ("model", "micro", "evaluate", "tune", "nccl")
#: Test hook: a comma list of row-name prefixes (e.g. ``evaluate eager vqa``) whose command gets an option
#: no subcommand knows, so it exits non-zero (the CPU test checks that such a row is recorded as failed).
BREAK_ENV = "GPU_PRODUCT_CHECK_BREAK"
TARGETS = ("evaluate attack phase >= 80 % of the microbenchmark PGD-10 rate (ratio >= 0.80); "
           "compiled evaluation >= 15 % MFU; training >= 15 % MFU in bf16")
#: Defaults of the sizing options: (full run, ``--tiny``).
SIZING = {"image_size": (480, 64), "n_samples": (256, 8), "steps": (24, 2), "micro_batch_size": (8, 2),
          "batch_size": (16, 2), "eval_batch_size": (32, 8), "train_n": (256, 16), "pgd_batch": (32, 2),
          "n_answers": (N_ANSWERS, 64)}
#: ``--tiny``: a small model made by ``train pretrain`` (seconds on one CPU thread).
TINY_ARCH = ["--arch", "tiny", "--d-model", "64", "--layers", "1", "--heads", "2", "--ffn-dim", "128",
             "--resnet-layers", "1,1,1", "--resnet-planes", "8"]


@dataclass
class Row:
    part: str
    name: str
    config: str
    status: str = "ok"
    samples_per_s: float | None = None
    mfu: float | None = None
    ratio: float | None = None
    peak_gib: float | None = None
    seconds: float | None = None
    note: str = ""
    log: str = ""


class Check:
    """Keeps the rows and the report, rewrites the JSON after every row, runs the subprocesses."""

    def __init__(self, args: argparse.Namespace, work: Path):
        self.args = args
        self.work = work
        self.rows: list[Row] = []
        self.report: dict[str, Any] = {}
        self.deadline = time.perf_counter() + args.total
        self.broken = [s.strip() for s in os.environ.get(BREAK_ENV, "").split(",") if s.strip()]

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        parts = [f"{row.name}: {row.status}"]
        if row.samples_per_s is not None:
            parts.append(f"{row.samples_per_s:.2f} samples/s")
        if row.mfu is not None:
            parts.append(f"MFU {100 * row.mfu:.1f} %")
        if row.ratio is not None:
            parts.append(f"ratio {row.ratio:.2f}")
        if row.peak_gib is not None:
            parts.append(f"peak {row.peak_gib:.2f} GiB")
        log(", ".join(parts) + (f" ({row.note})" if row.note else ""))
        self.write_json()
        return row

    def write_json(self) -> None:
        if self.args.json:
            data = {**self.report, "rows": [asdict(r) for r in self.rows]}
            Path(self.args.json).write_text(json.dumps(data, indent=2, default=str) + "\n")

    def run(self, name: str, cmd: list[str]) -> tuple[str, str, float]:
        """(status, the last 60 lines of its output, seconds): "ok", "failed: <the error line>" or "no result:
        over the limit". Each command gets at most --part-limit and what is left of --total."""
        left = self.deadline - time.perf_counter()
        if left < 10:
            return f"skipped: {left:.0f} s of --total left", "", 0.0
        limit = min(self.args.part_limit, left)
        if any(name.startswith(b) for b in self.broken):
            cmd = [*cmd, "--no-such-option-for-the-test"]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               "PYTHONUNBUFFERED": "1"}
        log(f"{name}: {' '.join(cmd[2:] if cmd[1] == '-m' else cmd)[:300]}")
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, env=env, cwd=ROOT)
        except subprocess.TimeoutExpired as exc:
            err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
            return f"no result: over the {limit:.0f} s limit", "\n".join(err.splitlines()[-60:]), limit
        seconds = time.perf_counter() - t0
        tail = "\n".join(((proc.stderr or "") + (proc.stdout or "")).strip().splitlines()[-60:])
        if proc.returncode != 0:
            return f"failed (rc {proc.returncode}): {gpu_eval_check.failure_line(proc.stderr or proc.stdout)[:160]}", \
                tail, seconds
        return "ok", tail, seconds

    # -- the commands ----------------------------------------------------------------------------------------
    def cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "robustbench_ofa", *args]

    def evaluate_args(self, task: str, data: Path, out: Path, n: int, steps: int, extra: list[str]) -> list[str]:
        a = self.args
        return ["evaluate", "--model", str(self.work / "base480"), "--task", task, "--data", f"manifest:{data}",
                "--attack", "pgd", "--eps", "8/255", "--steps", str(steps), "--no-early-stop",
                "--n-samples", str(n), "--batch-size", str(a.eval_batch_size), "--seed", "0", "--no-transfer",
                "--sanity-samples", "1", "--sanity-steps", "1", "--sanity-restarts", "1", "--report", "",
                "--quiet", "--out", str(out), *extra]


def _attacked(out: Path) -> dict[str, float]:
    """The attack phase of one evaluate run: attacked samples, their seconds and fwd+bwd passes."""
    db = sqlite3.connect(out / "results.sqlite")
    try:
        n, grads, secs = db.execute("SELECT COUNT(*), COALESCE(SUM(grad_evals), 0), COALESCE(SUM(seconds), 0) "
                                    "FROM results WHERE attack = 'pgd' AND status = 'attacked'").fetchone()
        clean_n, clean_ok = db.execute("SELECT COUNT(*), COALESCE(SUM(correct), 0) FROM clean").fetchone()
    finally:
        db.close()
    return {"attacked": n, "grad_evals": grads, "seconds": secs, "clean_n": clean_n, "clean_correct": clean_ok}


# -- part 1: model, answers and data ---------------------------------------------------------------------------
def write_answer_file(path: Path, total: int = N_ANSWERS) -> int:
    from robustbench_ofa.data.synthetic import VQA_ANSWERS

    answers = list(dict.fromkeys(VQA_ANSWERS))
    answers += [f"filler answer {i:04d}" for i in range(total - len(answers))]
    path.write_text("\n".join(answers) + "\n", encoding="utf-8")
    return len(answers)


def part_model(check: Check) -> bool:
    a = check.args
    answers = check.work / "answers-3129.txt"
    count = write_answer_file(answers, a.n_answers)
    arch = TINY_ARCH if a.tiny else ["--arch", "base"]
    cmd = check.cli("train", "pretrain", *arch, "--steps", "1", "--batch-size", "2", "--image-size",
                    str(a.image_size), "--task", ",".join(TASKS), "--n", "64", "--eval-data", "none", "--answers",
                    str(answers), "--out", str(check.work / "base480"), "--quiet", "--device", a.device,
                    "--checkpoint-every", "0", "--no-resume")
    status, tail, secs = check.run("model pretrain", cmd)
    note = f"{count} VQA answers: the generator's {count - sum(1 for _ in _fillers(answers))} + filler lines"
    check.add(Row("model", "model pretrain", f"{'tiny' if a.tiny else 'base'}, {a.image_size} px, 1 step",
                  status, seconds=secs, note=note, log=tail))
    return status == "ok"


def _fillers(path: Path):
    return (line for line in path.read_text().splitlines() if line.startswith("filler answer"))


def _parse_box(text: str) -> tuple[float, float, float, float] | None:
    nums = [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", text)]
    if len(nums) != 4 or not (nums[0] < nums[2] and nums[1] < nums[3]):
        return None
    return tuple(nums)  # type: ignore[return-value]


def part_data(check: Check) -> bool:
    """Generated samples at the model's size as manifests, relabelled with the model's clean predictions."""
    from robustbench_ofa.data.manifest import write_manifest
    from robustbench_ofa.data.synthetic import SceneConfig, generate

    a = check.args
    data = check.work / "data"
    n = max(a.n_samples, a.nccl_samples)
    ok, notes, logs, t0 = True, [], [], time.perf_counter()
    for task in TASKS:
        samples = generate(task, "downstream_test", n, SceneConfig(image_size=a.image_size), 0)
        gen = write_manifest(samples, data / f"{task}-generated.jsonl", data / "images")
        out = check.work / f"labels-{task}"
        status, tail, _ = check.run(f"data labels {task}", check.cli(*check.evaluate_args(
            task, gen, out, n, 1, ["--device", a.device, "--precision", "fp32"])))
        if status != "ok":
            ok = False
            notes.append(f"{task}: {status}")
            logs.append(tail)
            continue
        db = sqlite3.connect(out / "results.sqlite")
        preds = dict(db.execute("SELECT uid, pred FROM clean WHERE task = ?", (task,)).fetchall())
        db.close()
        relabelled = 0
        for s in samples:
            pred = preds.get(s.uid)
            if pred is None:
                continue
            if task == "vqa":
                s.label, s.answers = pred, [pred]
                s.meta.pop("answer_scores", None)
                relabelled += 1
            else:
                box = _parse_box(pred)
                if box is not None:
                    s.box = box
                    relabelled += 1
        write_manifest(samples, data / f"{task}.jsonl", data / "images")
        notes.append(f"{task}: {relabelled}/{len(samples)} labelled with the model's prediction")
    status = "ok" if ok else "failed: " + "; ".join(n for n in notes if "failed" in n or "no result" in n)
    check.add(Row("data", "data generate + relabel", f"downstream_test, {a.image_size} px, n {n} per task",
                  status, seconds=time.perf_counter() - t0, note="; ".join(notes), log="\n".join(logs)))
    return ok


# -- part 2: microbenchmark and FLOP counts ----------------------------------------------------------------------
def part_micro(check: Check) -> dict[str, Any]:
    from robustbench_ofa.models import OFAConfig, OFAModel

    a = check.args
    device = torch.device(a.device)
    info: dict[str, Any] = {}
    precision = a.precision
    t0 = time.perf_counter()
    try:
        with gpu_check.time_limit(a.part_limit):
            config = OFAConfig.from_pretrained(str(check.work / "base480"))
            model = OFAModel(config).eval().requires_grad_(False).to(device)
            inputs = gpu_check.make_inputs(config.vocab_size, a.pgd_batch, a.image_size, 16, 4, device)
            attack_flops = gpu_check.count_flops(model, inputs, precision) / inputs.size
            info["attack_flops_per_sample"] = attack_flops
            info["train_flops_per_sample"] = count_train_flops(model, inputs, precision) / inputs.size
            info["params"] = sum(p.numel() for p in model.parameters())
            bench = gpu_check.Bench(device, 2 if not a.tiny else 1, 1 if not a.tiny else 0, check.report["peak"],
                                    budget_s=float("inf"), json_path=None)
            row = bench.measure(f"PGD-10 {precision}", "pgd", precision,
                                lambda: gpu_check.pgd(model, inputs, precision, 10), inputs.size, attack_flops * 10)
        model = None  # frees the device memory before the product's commands run
        bench.cleanup()
        info["pgd_samples_per_s"] = row.samples_per_s
        status = row.status
        r = Row("micro", "micro PGD-10", f"gpu_check.pgd, {precision}, batch {a.pgd_batch}, {a.image_size} px",
                status, samples_per_s=row.samples_per_s, mfu=row.mfu, peak_gib=row.peak_mem_gib,
                seconds=time.perf_counter() - t0,
                note=f"FlopCounterMode: attack fwd+bwd {attack_flops / 1e9:.3f} GFLOP/sample, training fwd+bwd "
                     f"{info['train_flops_per_sample'] / 1e9:.3f} GFLOP/sample")
    except Exception as exc:  # recorded; the product parts still run (without ratio/MFU)
        r = Row("micro", "micro PGD-10", f"gpu_check.pgd, {precision}", f"failed: {gpu_check.short(exc, 160)}",
                seconds=time.perf_counter() - t0)
    check.add(r)
    check.report["flops"] = {k: v for k, v in info.items() if "flops" in k}
    return info


def count_train_flops(model: torch.nn.Module, inputs, precision: str) -> int:
    """FLOPs of one training fwd+bwd (every weight gets a gradient; the images do not), FlopCounterMode."""
    model.train().requires_grad_(True)

    def step() -> None:
        with gpu_check.autocast(precision, inputs.pixels.device.type):
            logits = model(input_ids=inputs.ids, patch_images=inputs.pixels * 2 - 1,
                           decoder_input_ids=inputs.dec).logits
        gpu_check._loss(logits, inputs.targets).backward()

    try:
        return gpu_check.count_step_flops(step)[0]
    finally:
        model.zero_grad(set_to_none=True)
        model.eval().requires_grad_(False)


# -- part 3: evaluate -------------------------------------------------------------------------------------------
def part_evaluate(check: Check, compiled: bool, micro: dict[str, Any]) -> None:
    a = check.args
    mode = "compile" if compiled else "eager"
    peak = check.report["peak"]
    for task in TASKS:
        name = f"evaluate {mode} {task}"
        out = check.work / f"eval-{mode}-{task}"
        extra = ["--device", a.device, "--precision", a.precision] + (["--compile"] if compiled else [])
        cmd = check.cli(*check.evaluate_args(task, check.work / "data" / f"{task}.jsonl", out, a.n_samples, 10,
                                             extra))
        status, tail, secs = check.run(name, cmd)
        row = Row("evaluate", name, f"pgd-10 8/255, {a.precision}, n {a.n_samples}, batch {a.eval_batch_size}",
                  status, seconds=secs, log=tail)
        if status == "ok":
            try:
                phase = _attacked(out)
                run = json.loads((out / "summary.json").read_text())["run"]
                row.note = (f"attacked {phase['attacked']}/{phase['clean_n']} (clean-correct {phase['clean_correct']}),"
                            f" {phase['grad_evals']} fwd+bwd in {phase['seconds']:.2f} s; evaluate phase "
                            f"{run['evaluate_seconds']} s")
                compile_info = run.get("compile") or {}
                if compile_info.get("failed_in"):
                    row.status = f"compile failed in {'; '.join(compile_info['failed_in'])[:160]} (ran eagerly)"
                elif compile_info.get("limit_reached_in"):
                    row.status = f"recompile limit in {'; '.join(compile_info['limit_reached_in'])[:160]}"
                if compiled:
                    row.note += f"; compile: {compile_info.get('graphs')} graphs"
                if phase["attacked"] == 0 or phase["seconds"] <= 0:
                    row.status = "failed: no sample attacked (no clean-correct sample)"
                else:
                    row.samples_per_s = phase["attacked"] / phase["seconds"]
                    flops = micro.get("attack_flops_per_sample")
                    if flops and peak:
                        row.mfu = flops * phase["grad_evals"] / phase["seconds"] / (peak * 1e12)
                    if micro.get("pgd_samples_per_s"):
                        row.ratio = row.samples_per_s / micro["pgd_samples_per_s"]
            except Exception as exc:
                row.status = f"failed reading the run: {gpu_check.short(exc, 140)}"
        check.add(row)


# -- part 4: train tune -----------------------------------------------------------------------------------------
def part_tune(check: Check, micro: dict[str, Any]) -> None:
    a = check.args
    peak = check.report["peak"]
    log_every = max(1, a.steps // 2)
    for method, extra in (("finetune", []), ("prompt", ["--hparam", "length=100"])):
        for ckpt in (False, True):
            name = f"tune {method}" + (" +ckpt" if ckpt else "")
            out = check.work / f"tune-{method}{'-ckpt' if ckpt else ''}"
            cmd = check.cli("train", "tune", "--base", str(check.work / "base480"), "--method", method, *extra,
                            "--task", ",".join(TASKS), "--n", str(a.train_n), "--image-size", str(a.image_size),
                            "--answers", str(check.work / "answers-3129.txt"), "--eval-data", "none",
                            "--steps", str(a.steps), "--batch-size", str(a.batch_size), "--micro-batch-size",
                            str(a.micro_batch_size), "--log-every", str(log_every), "--checkpoint-every", "0",
                            "--device", a.device, "--out", str(out), "--quiet", "--no-resume",
                            *(["--activation-checkpointing"] if ckpt else []))
            status, tail, secs = check.run(name, cmd)
            precision = "bf16" if a.device.startswith("cuda") else "fp32"
            row = Row("tune", name, f"{' '.join(extra) or 'all weights'}, {precision}, batch {a.batch_size}, micro "
                                    f"{a.micro_batch_size}, {a.steps} steps", status, seconds=secs, log=tail)
            if status == "ok":
                try:
                    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()
                               if line.strip()]
                    last = [r for r in records if r.get("samples_per_s")][-1]
                    row.samples_per_s = float(last["samples_per_s"])
                    row.peak_gib = last.get("peak_gpu_gib", last.get("peak_rss_gib"))
                    key = "train_flops_per_sample" if method == "finetune" else "attack_flops_per_sample"
                    if micro.get(key) and peak:
                        row.mfu = row.samples_per_s * micro[key] / (peak * 1e12)
                    row.note = (f"last window: step {last.get('step')}, {last.get('elapsed_s')} s elapsed; peak "
                                + ("GPU" if "peak_gpu_gib" in last else "RSS")
                                + ("; MFU from the training count" if method == "finetune" else
                                   "; MFU approx.: the attack-step count (no weight grads, prompts uncounted)"))
                except Exception as exc:
                    row.status = f"failed reading metrics.jsonl: {gpu_check.short(exc, 140)}"
            check.add(row)


# -- part 5: torchrun -------------------------------------------------------------------------------------------
def part_nccl(check: Check) -> None:
    a = check.args
    out = check.work / "eval-torchrun"
    backend = "nccl" if a.device.startswith("cuda") else "gloo"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1", "-m",
           "robustbench_ofa", *check.evaluate_args("vqa", check.work / "data" / "vqa.jsonl", out, a.nccl_samples, 2,
                                                   ["--device", a.device, "--precision", a.precision])]
    status, tail, secs = check.run(f"nccl torchrun {backend}", cmd)
    row = Row("nccl", f"nccl torchrun {backend}", f"1 process, vqa, n {a.nccl_samples}, pgd-2", status,
              seconds=secs, log=tail)
    if status == "ok":
        try:
            run = json.loads((out / "summary.json").read_text())["run"]
            dist = run.get("distributed")
            if dist:
                row.note = f"distributed: {json.dumps(dist, default=str)[:160]}"
            else:  # robustbench_ofa.distributed.from_env: WORLD_SIZE 1 is the single-process path
                row.note = (f"WORLD_SIZE=1: no process group was made, so {backend} did not run (a 1-process "
                            "torchrun takes the single-process path; NCCL needs 2 ranks, i.e. 2 GPUs)")
                phase = _attacked(out)
                if phase["seconds"] > 0:
                    row.samples_per_s = phase["attacked"] / phase["seconds"]
                elif run.get("evaluate_seconds"):
                    row.samples_per_s = phase["clean_n"] / float(run["evaluate_seconds"])
                    row.note += "; samples/s of the whole evaluate phase (nothing attacked)"
        except Exception as exc:
            row.status = f"failed reading the run: {gpu_check.short(exc, 140)}"
    check.add(row)


# -- report -----------------------------------------------------------------------------------------------------
def markdown_table(rows: list[Row]) -> str:
    head = ["part", "config", "samples/s", "MFU", "ratio to micro PGD / peak mem (GiB)", "status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        extra = []
        if r.ratio is not None:
            extra.append(f"ratio {r.ratio:.2f}")
        if r.peak_gib is not None:
            extra.append(f"{r.peak_gib:.2f} GiB")
        cells = [r.name, r.config, "n/a" if r.samples_per_s is None else f"{r.samples_per_s:.2f}",
                 "n/a" if r.mfu is None else f"{100 * r.mfu:.1f} %", ", ".join(extra) or "n/a", r.status]
        lines.append("| " + " | ".join(c.replace("|", "/").replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines)


def target_lines(rows: list[Row]) -> list[str]:
    lines = [f"Targets: {TARGETS}"]
    for r in rows:
        verdict = []
        if r.part == "evaluate" and r.ratio is not None:
            verdict.append(f"ratio {r.ratio:.2f} {'>=' if r.ratio >= 0.8 else '<'} 0.80")
        if r.mfu is not None and ((r.part == "evaluate" and "compile" in r.name) or r.part == "tune"):
            verdict.append(f"MFU {100 * r.mfu:.1f} % {'>=' if r.mfu >= 0.15 else '<'} 15 %")
        if verdict:
            lines.append(f"  {r.name}: " + "; ".join(verdict))
    return lines


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip() or "unknown"
    except Exception:
        return "unknown"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--tiny", action="store_true", help="a tiny model at 64 px, 8 samples, 2 steps (the CPU test)")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file (after every part)")
    p.add_argument("--work", default=None, help="working folder (default: a temporary one, removed at the end)")
    p.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset of " + ",".join(PARTS))
    p.add_argument("--image-size", type=int, default=None, help="px (default 480; 64 with --tiny)")
    p.add_argument("--n-samples", type=int, default=None, help="evaluate samples per task (default 256; 8 tiny)")
    p.add_argument("--eval-batch-size", type=int, default=None, help="evaluate --batch-size (default 32; 8 tiny)")
    p.add_argument("--pgd-batch", type=int, default=None, help="microbenchmark batch (default 32; 2 tiny)")
    p.add_argument("--n-answers", type=int, default=None,
                   help="VQA answer-set size (default 3129, OFA's VQAv2; 64 with --tiny: every VQA step scores the "
                        "whole set, which would dominate the CPU test)")
    p.add_argument("--nccl-samples", type=int, default=4, help="samples of the torchrun evaluate")
    p.add_argument("--steps", type=int, default=None, help="train tune steps (default 24; 2 tiny)")
    p.add_argument("--batch-size", type=int, default=None, help="train tune --batch-size (default 16; 2 tiny)")
    p.add_argument("--micro-batch-size", type=int, default=None, help="train tune micro-batch (default 8; 2 tiny)")
    p.add_argument("--train-n", type=int, default=None, help="train tune --n per task (default 256; 16 tiny)")
    p.add_argument("--precision", default="bf16", choices=["fp32", "bf16"], help="evaluate and micro precision")
    p.add_argument("--skip-compile", action="store_true", help="no evaluate --compile runs")
    p.add_argument("--part-limit", type=float, default=180.0, help="seconds allowed to each command")
    p.add_argument("--total", type=float, default=470.0, help="seconds allowed to all commands together")
    p.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak (default from the card name)")
    args = p.parse_args(argv)
    for name, (full, tiny) in SIZING.items():
        if getattr(args, name) is None:
            setattr(args, name, tiny if args.tiny else full)
    args.parts = [s.strip() for s in args.parts.split(",") if s.strip()]
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        p.error(f"--parts: unknown {unknown}; expected some of {','.join(PARTS)}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA here (use --device cpu, e.g. with --tiny)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    peak, peak_source = gpu_check.default_peak(device, args.peak_tflops)
    env = gpu_check.environment(device, peak, peak_source)
    env["git_commit"] = git_commit()
    print(f"torch {env['torch']} | CUDA {env['cuda']} | device {device}: {env['device_name']} | dense bf16 peak: "
          f"{'n/a' if peak is None else f'{peak} TFLOP/s'} ({peak_source}) | commit {env['git_commit']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="gpu-product-check-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        check = Check(args, work)
        check.report.update(env=env, peak=peak, targets=TARGETS, config={
            k: v for k, v in vars(args).items() if k not in ("json",)})
        check.write_json()
        have_model = have_data = False
        if "model" in args.parts:
            have_model = part_model(check)
            if have_model:
                have_data = part_data(check)
        else:
            have_model = (work / "base480" / "config.json").exists()
            have_data = all((work / "data" / f"{t}.jsonl").exists() for t in TASKS)
        micro: dict[str, Any] = {}
        if "micro" in args.parts:
            if have_model:
                micro = part_micro(check)
            else:
                check.add(Row("micro", "micro PGD-10", "", "skipped: no model"))
        for part, runs in (("evaluate", lambda: [part_evaluate(check, c, micro) for c in
                                                 ([False] if args.skip_compile else [False, True])]),
                           ("tune", lambda: part_tune(check, micro)), ("nccl", lambda: part_nccl(check))):
            if part not in args.parts:
                continue
            if not have_model or (part != "tune" and not have_data):
                check.add(Row(part, part, "", "skipped: no model or data (part model failed)"))
                continue
            runs()
        if args.skip_compile and "evaluate" in args.parts:
            check.add(Row("evaluate", "evaluate compile", "", "skipped (--skip-compile)"))
        print()
        print(markdown_table(check.rows))
        print()
        for line in target_lines(check.rows):
            print(line)
        print(f"torch {env['torch']}, CUDA {env['cuda']}, device {env['device_name']}, commit {env['git_commit']}")
        failed = [r.name for r in check.rows if not (r.status == "ok" or r.status.startswith("skipped"))]
        if failed:
            print(f"not ok: {', '.join(failed)} (each row's log in the JSON)")
        check.report["total_s"] = time.perf_counter() - gpu_check.T_START
        check.write_json()
    print(f"total {time.perf_counter() - gpu_check.T_START:.1f} s" + (f"; JSON: {args.json}" if args.json else ""),
          flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

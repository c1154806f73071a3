"""Peak memory of ``robust-ofa train tune`` on an OFA-base/large-shaped model at 480 px, by method and with or
without activation checkpointing: the table a user picks ``--micro-batch-size`` from.

Why the product's own commands: the numbers are what ``robust-ofa train`` itself holds, data, optimiser
state and all. The model is made by ``robust-ofa train pretrain --arch base|large --steps 1`` (OFA's
shape and image size with weights of one step, a small BPE vocabulary instead of OFA's 59,457 tokens:
memory does not depend on the values, and the embedding is a few percent of OFA-base's weights), then
each configuration runs ``robust-ofa train tune`` for a few optimiser steps on generated VQA data and the
trainer's ``metrics.jsonl`` gives its peak memory (``peak_rss_gib``: the process's peak resident set; on
CUDA also ``peak_gpu_gib``, the most the allocator held) and seconds per step (the steps after the
first). A load-only row gives the resident set of the loaded model, for the increment training adds.

    python scripts/memory_table.py --json memory.json                        # CPU: OFA-base, micro-batch 2
    python scripts/memory_table.py --device cuda --arch base,large --micro-batch-size 8 --json gpu.json
    python scripts/memory_table.py --arch tiny --image-size 64 --steps 2     # seconds: the CPU test's config
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: (label, method, extra tune arguments)
METHODS = (("finetune", "finetune", []),
           ("prompt-100", "prompt", ["--hparam", "length=100", "--hparam", "depth=both"]))
LOAD_ONLY = """
import json, resource, sys
from robustbench_ofa.models.loading import load_pretrained
model = load_pretrained(sys.argv[1], sys.argv[2])
print(json.dumps({"peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
                  "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1)}))
"""


def _cli(args: list[str], limit: float) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "robustbench_ofa", *args], env=env, capture_output=True, text=True,
                          timeout=limit)


def _tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def make_base(work: Path, arch: str, args: argparse.Namespace) -> Path:
    out = work / f"{arch}-base"
    if not (out / "card.json").is_file():
        proc = _cli(["train", "pretrain", "--arch", arch, "--task", "vqa", "--n", "8", "--steps", "1",
                     "--batch-size", "2", "--image-size", str(args.image_size), "--eval-data", "none",
                     "--device", args.device, "--out", str(out), "--quiet"], args.limit)
        if proc.returncode:
            raise SystemExit(f"memory_table: making the {arch} model failed: {_tail(proc.stderr)}")
    return out


def measure(base: Path, arch: str, label: str, method: str, extra: list[str], checkpointing: bool,
            work: Path, args: argparse.Namespace) -> dict:
    out = work / f"{arch}-{label}-{'ckpt' if checkpointing else 'plain'}"
    row = {"arch": arch, "method": label, "activation_checkpointing": checkpointing,
           "micro_batch_size": args.micro_batch_size, "image_size": args.image_size, "device": args.device}
    cmd = ["train", "tune", "--base", str(base), "--method", method, *extra, "--task", "vqa", "--n",
           str(args.micro_batch_size * args.steps), "--batch-size", str(args.micro_batch_size), "--micro-batch-size",
           str(args.micro_batch_size), "--steps", str(args.steps), "--image-size", str(args.image_size),
           "--eval-data", "none", "--log-every", "1", "--checkpoint-every", "0", "--device", args.device,
           "--out", str(out), "--no-resume", "--quiet"]
    if checkpointing:
        cmd.append("--activation-checkpointing")
    t0 = time.perf_counter()
    proc = _cli(cmd, args.limit)
    row["command_seconds"] = round(time.perf_counter() - t0, 1)
    if proc.returncode:
        return {**row, "status": f"failed: {_tail(proc.stderr)}"}
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    last = steps[-1]
    per_step = (last["elapsed_s"] - steps[0]["elapsed_s"]) / max(len(steps) - 1, 1)
    row.update(status="ok", peak_rss_gib=last["peak_rss_gib"], seconds_per_step=round(per_step, 2))
    if "peak_gpu_gib" in last:
        row["peak_gpu_gib"] = last["peak_gpu_gib"]
    return row


def table(rows: list[dict]) -> str:
    gpu = any("peak_gpu_gib" in r for r in rows)
    head = ["model", "method", "activation checkpointing", "micro-batch", "peak RSS GiB"] + (
        ["peak GPU GiB"] if gpu else []) + ["s / step", "status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [f"OFA-{r['arch']} {r['image_size']} px", r["method"],
                 "-" if r["method"] == "load only" else ("on" if r["activation_checkpointing"] else "off"),
                 str(r.get("micro_batch_size", "-")), str(r.get("peak_rss_gib", "-"))]
        cells += [str(r.get("peak_gpu_gib", "-"))] if gpu else []
        cells += [str(r.get("seconds_per_step", "-")), r.get("status", "ok")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="base", help="comma list of OFA sizes (tiny, medium, base, large)")
    parser.add_argument("--image-size", type=int, default=480)
    parser.add_argument("--micro-batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="optimiser steps per configuration (>= 2)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work", default=None, help="folder for the models (default: a temporary one)")
    parser.add_argument("--json", default=None, help="write the rows here as well")
    parser.add_argument("--limit", type=float, default=1800, help="seconds each command may take")
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps: at least 2 (the first step's time includes warm-up)")
    work = Path(args.work or tempfile.mkdtemp(prefix="memory-table-"))
    work.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for arch in args.arch.split(","):
        base = make_base(work, arch, args)
        load = subprocess.run([sys.executable, "-c", LOAD_ONLY, str(base), args.device], capture_output=True,
                              text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        if load.returncode == 0:
            rows.append({"arch": arch, "method": "load only", "image_size": args.image_size, "status": "ok",
                         **json.loads(load.stdout.strip().splitlines()[-1])})
        for label, method, extra in METHODS:
            for checkpointing in (False, True):
                row = measure(base, arch, label, method, extra, checkpointing, work, args)
                rows.append(row)
                print(json.dumps(row), flush=True)
                if args.json:
                    Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    print(table(rows))
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark (pytest-benchmark): one evaluation (embedded-finetune, VE, PGD-10 at the default L-inf and
L2 ladders, 96 samples, batches of 8, the large-eps check shrunk, no transfer) run three ways on this
machine's 2 cores: one process with one thread, one process with torch's default threads, and
``torchrun --nproc-per-node 2`` with one thread per process. Same work, same rows. The gated pair (1 and 2
processes x 1 thread) runs 3 times each: the gate reads the median (``tests/speed_targets.toml``).

Timed: the whole command (start-up, model load, evaluation, aggregates). Each run's ``extra_info`` holds
the evaluation phase alone (``evaluate_seconds``) and, for the torchrun run, each rank's time in that
phase's collectives: waiting for the other rank to arrive (``wait_seconds``, load imbalance) and gathering
once both have (``gather_seconds``). ``scripts/bench_ratios.py`` prints the ratios. Uses the embedded zoo under ``$ROBUST_OFA_HOME`` (built first if missing, ~8 min; CI
builds it in its end-to-end step before the benchmarks).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import launcher

pytestmark = pytest.mark.benchmark
GROUP = "evaluate embedded-finetune VE PGD-10, 96 samples: processes x threads on 2 cores"


def _args(out) -> list[str]:
    return ["evaluate", "--attack", "pgd,pgdl2", "--model", "embedded-finetune", "--task", "ve", "--n-samples", "96",
            "--batch-size", "8", "--steps", "10", "--no-transfer", "--sanity-samples", "8", "--sanity-steps", "10",
            "--sanity-restarts", "1", "--report", "", "--quiet", "--out", str(out)]


@pytest.fixture(scope="module", autouse=True)
def zoo():
    """Build (or find) the embedded zoo before anything is timed."""
    proc = subprocess.run([sys.executable, "-m", "robustbench_ofa", "zoo", "build"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def _timed(benchmark, tmp_path, nproc: int, threads: int | None, rounds: int = 1):
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    outs = []

    def once():
        out = tmp_path / f"run{len(outs)}"
        outs.append(out)
        proc = subprocess.run([*launcher(nproc), "-m", "robustbench_ofa", *_args(out)], env=env, capture_output=True,
                              text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]

    benchmark.group = GROUP
    benchmark.pedantic(once, rounds=rounds, warmup_rounds=0)
    runs = [json.loads((out / "summary.json").read_text())["run"] for out in outs]
    # one value per round: bench_ratios gates the median of the rounds (tests/speed_targets.toml)
    benchmark.extra_info["evaluate_seconds"] = [run["evaluate_seconds"] for run in runs]
    if "distributed" in runs[-1]:
        benchmark.extra_info.update(runs[-1]["distributed"])
    return outs[-1]


def test_bench_eval_1proc_1thread(benchmark, tmp_path):
    _timed(benchmark, tmp_path, 1, 1, rounds=3)


def test_bench_eval_1proc_default_threads(benchmark, tmp_path):
    _timed(benchmark, tmp_path, 1, None)


def test_bench_eval_2proc_1thread(benchmark, tmp_path):
    out = _timed(benchmark, tmp_path, 2, 1, rounds=3)
    assert json.loads((out / "summary.json").read_text())["run"]["distributed"]["world_size"] == 2

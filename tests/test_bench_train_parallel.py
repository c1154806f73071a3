"""Benchmarks (pytest-benchmark) of data-parallel training, timed as the command a user runs: the whole
``robust-ofa train tune`` process (start-up, base load, data, training, saving), finetuning the embedded
base on VE, global batch 32, 1 thread per process.

  * ``test_bench_train_1proc_1thread``: one process, the whole batch in one pass (the baseline);
  * ``test_bench_train_2proc_1thread``: ``torchrun --nproc-per-node 2``, 16 samples per process;
  * ``test_bench_train_accumulate_8x4``: one process, micro-batch 8 x 4 accumulation steps.

``extra_info`` holds the training phase alone: ``step_seconds``, per run the time per optimiser step over
steps 31-90 from the run's own ``metrics.jsonl`` (the first 30, with warm-up, left out), and samples/s.
``scripts/bench_ratios.py`` fails CI when the phase's ratios (medians of 3 runs) miss their gates in
``tests/speed_targets.toml``. Uses the embedded zoo under ``$ROBUST_OFA_HOME``
(built first if missing, ~8 min; CI builds it in its end-to-end step before the benchmarks).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

import pytest
from conftest import launcher

pytestmark = pytest.mark.benchmark
GROUP = "train tune embedded-base finetune VE, batch 32: processes x micro-batch on 2 cores"
STEPS = 90
#: Logged every this many steps: the training phase is timed from the first record to the last, so the
#: first window (warm-up: the first forward passes allocate and pick kernels) is left out.
WINDOW = 30
#: Runs per configuration: a gated ratio is the median of at least 3 (one slow run must not decide it).
ROUNDS = 3


@pytest.fixture(scope="module", autouse=True)
def zoo():
    """Build (or find) the embedded zoo before anything is timed."""
    proc = subprocess.run([sys.executable, "-m", "robustbench_ofa", "zoo", "build"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def _timed(benchmark, tmp_path, nproc: int, micro: int | None = None) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    outs = []

    def once():
        out = tmp_path / f"run{len(outs)}"
        outs.append(out)
        args = ["train", "tune", "--base", "embedded-base", "--method", "finetune", "--task", "ve", "--n-train", "640",
                "--batch-size", "32", "--steps", str(STEPS), "--eval-data", "none", "--checkpoint-every", "0",
                "--log-every", str(WINDOW), "--threads", "1", "--quiet", "--out", str(out)]
        if micro:
            args += ["--micro-batch-size", str(micro)]
        proc = subprocess.run([*launcher(nproc), "-m", "robustbench_ofa", *args], env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]

    benchmark.group = GROUP
    benchmark.pedantic(once, rounds=ROUNDS, warmup_rounds=0)
    steps = []
    for out in outs:
        card = json.loads((out / "card.json").read_text())
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        first, last = records[0], records[-1]
        assert card["execution"]["world_size"] == nproc and (first["step"], last["step"]) == (WINDOW, STEPS)
        steps.append(round((last["elapsed_s"] - first["elapsed_s"]) / (STEPS - WINDOW), 5))
    # one value per round: bench_ratios gates the median of the rounds (tests/speed_targets.toml)
    benchmark.extra_info.update(step_seconds=steps, samples_per_s=round(32 / statistics.median(steps), 1),
                                **card["execution"])


def test_bench_train_1proc_1thread(benchmark, tmp_path):
    _timed(benchmark, tmp_path, 1)


def test_bench_train_2proc_1thread(benchmark, tmp_path):
    _timed(benchmark, tmp_path, 2)


def test_bench_train_accumulate_8x4(benchmark, tmp_path):
    _timed(benchmark, tmp_path, 1, micro=8)

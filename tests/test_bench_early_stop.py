"""Benchmark (pytest-benchmark): what early stopping saves in ``robust-ofa evaluate`` on the embedded
default, counted in gradient evaluations (exact, so one run each): the command a user runs, PGD at the
default L-inf ladder on every embedded task, embedded-finetune, 32 samples per task, with early stopping
(the default: a fooled sample leaves the batch) and with ``--no-early-stop``. ``extra_info["grad_evals"]``
sums the attack's gradient evaluations over its attacked samples; ``tests/speed_targets.toml`` gates
their ratio. The time is recorded too (information). Uses the embedded zoo under ``$ROBUST_OFA_HOME``
(built first if missing; CI builds it in its end-to-end step before the benchmarks).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

pytestmark = pytest.mark.benchmark
GROUP = "evaluate embedded-finetune PGD-10, 32 samples per task: early stopping"


@pytest.fixture(scope="module", autouse=True)
def zoo():
    """Build (or find) the embedded zoo before anything is timed."""
    proc = subprocess.run([sys.executable, "-m", "robustbench_ofa", "zoo", "build"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def _run(benchmark, tmp_path, *extra: str) -> None:
    out = tmp_path / "run"

    def once():
        proc = subprocess.run([sys.executable, "-m", "robustbench_ofa", "evaluate", "--attack", "pgd", "--model",
                               "embedded-finetune", "--n-samples", "32", "--no-transfer", "--sanity-samples", "8",
                               "--sanity-steps", "10", "--sanity-restarts", "1", "--report", "", "--quiet",
                               "--out", str(out), *extra], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]

    benchmark.group = GROUP
    benchmark.pedantic(once, rounds=1, warmup_rounds=0)
    db = sqlite3.connect(out / "results.sqlite")
    (grads, attacked), = db.execute("SELECT SUM(grad_evals), COUNT(*) FROM results WHERE attack='pgd' AND "
                                    "status='attacked'").fetchall()
    db.close()
    assert attacked > 0
    benchmark.extra_info.update(grad_evals=int(grads), attacked=int(attacked))


def test_bench_eval_early_stop(benchmark, tmp_path):
    _run(benchmark, tmp_path)


def test_bench_eval_no_early_stop(benchmark, tmp_path):
    _run(benchmark, tmp_path, "--no-early-stop")

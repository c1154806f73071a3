"""CI's test pass: pytest spread over the machine's cores (pytest-xdist), each worker's OpenMP threads
waiting passively.

    python scripts/ci_pytest.py              # what CI runs (through tox -e py)
    python scripts/ci_pytest.py -k zoo       # extra arguments go to pytest

Why in parallel: most of the default pass's time is process start-up (each ``robust-ofa``, torchrun or
GPU-check process imports torch and transformers, about 9 s on the CI machine), which runs on one core;
one pytest process left the other core idle (1.37 of 2 cores busy). With two workers the default pass
took 982 s instead of 1,560 s on a 2-core AMD EPYC (measurements/ci-time-2026-12-08.md).

Why ``OMP_WAIT_POLICY=PASSIVE``: torch's OpenMP threads spin while they wait for work, so two torch
processes of 2 threads each on 2 cores slow each other 6-7x (a small training loop: 0.64-0.81 s alone,
4.6-4.8 s each side by side; 0.98-1.36 s with passive waiting). The wait policy changes no result (only
how idle threads wait), and it is set for the test passes alone: the benchmarks and the end-to-end
gates run one job at a time and keep the default (passive waiting is slower for a job alone).
Each worker keeps the thread counts a sequential run would have, so the tests compute the same numbers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: At most this many workers: the heaviest tests start torchrun with 2 processes of their own.
MAX_WORKERS = 4


def workers() -> int:
    """One worker per core, at most ``MAX_WORKERS`` (1 on a one-core machine: no parallelism to gain)."""
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS))


def parallel_args() -> list[str]:
    """pytest-xdist's arguments: ``worksteal`` hands an idle worker another's queued tests, so the long
    whole-command tests do not all end up at the tail of one worker."""
    n = workers()
    return ["-n", str(n), "--dist", "worksteal"] if n > 1 else []


def test_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", **(extra or {})}


def main(argv: list[str] | None = None) -> int:
    cmd = [sys.executable, "-m", "pytest", *parallel_args(), *(argv if argv is not None else sys.argv[1:])]
    print("+ OMP_WAIT_POLICY=PASSIVE " + " ".join(cmd[2:]), flush=True)
    return subprocess.call(cmd, env=test_env(), cwd=ROOT)


if __name__ == "__main__":
    raise SystemExit(main())

"""Run the pytest-benchmark suite, save its JSON, and report ratios (same run, and vs the previous run).

Timings on shared machines are noisy, so nothing here fails on an absolute time: the ratios are measured
within one run (a hot path against its baseline, medians of at least 3 rounds), and the gated ones
(``tests/speed_targets.toml``) fail the run when they miss their gate; the comparison with the previous
saved run is informational. The JSON goes to ``.benchmarks/latest.json`` and to a history folder that survives
fresh clones (``$ROBUST_OFA_BENCH_HISTORY``, default ``~/.cache/robust-ofa/benchmark-history``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The benchmark files CI runs (``tests/test_speed_targets.py`` checks every gated benchmark is in one).
BENCH_FILES = ["tests/test_bench_model.py", "tests/test_bench_attacks.py", "tests/test_bench_text.py",
               "tests/test_bench_answers.py", "tests/test_bench_distributed.py", "tests/test_bench_adv_train.py",
               "tests/test_bench_train_parallel.py", "tests/test_bench_early_stop.py"]


def main() -> int:
    history = Path(os.environ.get("ROBUST_OFA_BENCH_HISTORY", Path.home() / ".cache/robust-ofa/benchmark-history"))
    history.mkdir(parents=True, exist_ok=True)
    previous = sorted(history.glob("*.json"))
    out = ROOT / ".benchmarks" / "latest.json"
    out.parent.mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "pytest", "-q", "-o", "addopts=", "--benchmark-only", "-p", "no:cacheprovider",
           f"--benchmark-json={out}", *(str(ROOT / f) for f in BENCH_FILES)]
    rc = subprocess.call(cmd, cwd=ROOT)
    if rc != 0:
        return rc
    shutil.copy(out, history / f"{time.strftime('%Y%m%d-%H%M%S')}.json")
    args = [str(out)] + ([str(previous[-1])] if previous else [])
    print("\nbenchmark ratios" + (f" (previous run: {previous[-1].name})" if previous else " (no previous run saved)"))
    return subprocess.call([sys.executable, str(ROOT / "scripts" / "bench_ratios.py"), *args])


if __name__ == "__main__":
    raise SystemExit(main())

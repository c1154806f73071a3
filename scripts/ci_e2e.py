"""CI end-to-end gate: build the embedded zoo, run a small deterministic evaluation, `regress` it.

    python scripts/ci_e2e.py                 # what CI runs (through tox -e py)
    python scripts/ci_e2e.py --update        # deliberately refresh reports/baselines/embedded.json

Why a script and not three tox lines: the evaluation's settings must be exactly the baseline's (regress
refuses a run measured differently), so they are written once here, and the same file both checks and
refreshes the baseline. The zoo is built from nothing under ``$ROBUST_OFA_HOME`` (tox points it at a
fresh folder), so CI also proves that the embedded default builds on a clean machine.

The gate is statistical by default (``robust-ofa regress``' two-proportion test at alpha 0.05): a build on
another CPU model may differ in the last float bits, which must not fail CI, while a real loss of
robustness (tested with a deliberately weakened variant in tests/test_regress.py) does.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "reports" / "baselines" / "embedded.json"

#: The CI evaluation: every embedded variant, every embedded task, PGD-10 at 2/255. Small enough for
#: CI (a few minutes on 2 cores) and deterministic (seeded, fixed threads).
EVAL_ARGS = ["--attack", "pgd", "--eps", "2/255", "--steps", "10", "--n-samples", "96", "--batch-size", "32",
             "--seed", "0", "--no-transfer", "--report", "md", "--quiet"]


def _run(cmd: list[str]) -> int:
    print("+ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    rc = subprocess.call(cmd, cwd=ROOT)
    print(f"  ({time.perf_counter() - t0:.0f} s, exit {rc})", flush=True)
    return rc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="results directory (default: a fresh temporary one)")
    parser.add_argument("--update", action="store_true", help="write this run as the new baseline")
    args = parser.parse_args(argv)
    # A fresh directory: CI must measure this checkout, never resume an earlier run's results.
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="robust-ofa-ci-e2e-"))
    exe = [sys.executable, "-m", "robustbench_ofa.cli"]
    t0 = time.perf_counter()
    rc = _run([*exe, "zoo", "build"])
    if rc == 0:
        rc = _run([*exe, "evaluate", *EVAL_ARGS, "--out", str(out)])
    if rc == 0:
        regress = [*exe, "regress", "--baseline", str(BASELINE), "--results", str(out)]
        rc = _run(regress + (["--update"] if args.update else []))
    print(f"ci e2e: {'passed' if rc == 0 else 'FAILED'} in {time.perf_counter() - t0:.0f} s", flush=True)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())

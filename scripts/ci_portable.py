"""CI's second pass: the model-training and attack tests (marker ``kernels``) under the most portable CPU
kernels and one thread.

The CPU wheel of torch picks its kernels at run time (ATen's vectorised kernels, MKL's BLAS, oneDNN's
convolutions), and the thread count sets the order of float reductions. A test that trains or attacks a
model can pass on the CI machine's kernels and fail on the next CPU kind, because training's rounding
moves a borderline sample (issue 36: two tests pinned AVX-512 numbers and failed on AVX2). The default
pass runs on whatever this machine has (AVX-512 or AVX2, 2 threads); this pass reruns the tests marked
``kernels`` with every layer at its most portable instruction set and 1 thread, so a test that depends on
one kernel set fails here, on any machine. Spread over the cores like the default pass
(``scripts/ci_pytest.py``: pytest-xdist, passive OpenMP waiting).

    python scripts/ci_portable.py            # what CI runs (through tox -e py)
    python scripts/ci_portable.py -k adaptive  # extra arguments go to pytest
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ci_pytest import parallel_args, test_env

ROOT = Path(__file__).resolve().parents[1]

#: The most portable setting of each kernel layer: ATen's scalar ("default") kernels, MKL's SSE4.2 code
#: path, oneDNN's SSE4.1 ISA; one OpenMP/MKL thread (the default pass runs 2).
PORTABLE_ENV = {
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
    "ONEDNN_MAX_CPU_ISA": "SSE41",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}

#: Run inside the portable environment before the tests: the settings must bite, or this pass would only
#: repeat the default one.
_PROBE = ("import torch; cap = torch.backends.cpu.get_cpu_capability(); n = torch.get_num_threads(); "
          "print(f'ATen kernels: {cap}, threads: {n}'); raise SystemExit(0 if (cap, n) == ('DEFAULT', 1) else 1)")


def main(argv: list[str] | None = None) -> int:
    env = test_env(PORTABLE_ENV)
    if subprocess.call([sys.executable, "-c", _PROBE], env=env, cwd=ROOT) != 0:
        print("ci_portable: torch did not take the portable kernel settings; this pass would test nothing new",
              file=sys.stderr)
        return 1
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=--benchmark-skip",
           "-m", "kernels", *parallel_args(), *(argv if argv is not None else sys.argv[1:])]
    settings = " ".join(f"{k}={v}" for k, v in PORTABLE_ENV.items())
    print(f"+ OMP_WAIT_POLICY=PASSIVE {settings} " + " ".join(cmd[2:]), flush=True)
    return subprocess.call(cmd, env=env, cwd=ROOT)


if __name__ == "__main__":
    raise SystemExit(main())

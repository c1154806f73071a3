"""``python -m robustbench_ofa``: the ``robust-ofa`` command, also what torchrun launches per rank
(``torchrun --standalone --nproc-per-node N -m robustbench_ofa evaluate ...``)."""

from robustbench_ofa.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

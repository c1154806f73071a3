"""Running a study: record the study file, then each step that is not done yet, in order.

Resuming: a rerun skips finished steps (a variant with its card, an evaluation with its summary) and the
commands themselves resume an interrupted step from its checkpoint or results store. A run folder belongs
to one study file set one way: a rerun with an edited file or other ``--set`` values over it is refused
before any work, unless ``allow_changed`` (then finished steps are kept as they are, and their cards and
summaries keep the record of the study that made them).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.study.plan import Step, run_step
from robustbench_ofa.study.record import RECORD_FILE, differences, read_study_record, write_study_record
from robustbench_ofa.study.spec import StudySpec


def check_record(spec: StudySpec, root: Path, allow_changed: bool) -> None:
    """Refuse a changed study over an old run's folder (one line naming what changed)."""
    path = root / RECORD_FILE
    if not path.is_file():
        return
    changed = differences(read_study_record(path), spec.record())
    if changed and not allow_changed:
        what = {"sha256": "file content", "vars": "variables (--set NAME=...)",
                "overrides": "field overrides (--set SECTION.KEY=...)"}
        raise RobustOFAError(f"{root}: this folder holds a run of {spec.path} with different "
                             f"{' and '.join(what[c] for c in changed)}; use another --out, or pass "
                             "--allow-changed to continue it (finished steps are kept as they are)")


def run_study(spec: StudySpec, steps: list[Step], root: Path, allow_changed: bool = False) -> None:
    """Run the steps not done yet. Under torchrun every rank runs every step (tuning with DDP, evaluation
    sharded) in the one process group made here; rank 0 writes the record and prints, and the ranks meet
    after each step, so every rank sees the files the step wrote before the next one starts."""
    from robustbench_ofa.distributed import from_env
    from robustbench_ofa.training.parallel import job

    dist, _ = from_env(steps[0].device() if steps else "cpu")
    try:
        check_record(spec, root, allow_changed)
        if dist.is_main:
            write_study_record(root / RECORD_FILE, spec.record())
        dist.barrier()
        say = (lambda text: print(text, file=sys.stderr, flush=True)) if dist.is_main else (lambda text: None)
        for i, step in enumerate(steps, 1):
            label = f"[{i}/{len(steps)}] {step.kind} {step.name}"
            if step.done():
                say(f"study {spec.name}: {label}: done, skipped ({step.out})")
                continue
            say(f"study {spec.name}: {label}: {step.command()}")
            t0 = time.perf_counter()
            with job(dist):
                run_step(step)
            dist.barrier()
            say(f"study {spec.name}: {label}: finished in {time.perf_counter() - t0:.0f} s")
    finally:
        dist.close()

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
    check_record(spec, root, allow_changed)
    write_study_record(root / RECORD_FILE, spec.record())
    for i, step in enumerate(steps, 1):
        label = f"[{i}/{len(steps)}] {step.kind} {step.name}"
        if step.done():
            print(f"study {spec.name}: {label}: done, skipped ({step.out})", file=sys.stderr, flush=True)
            continue
        print(f"study {spec.name}: {label}: {step.command()}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        run_step(step)
        print(f"study {spec.name}: {label}: finished in {time.perf_counter() - t0:.0f} s", file=sys.stderr,
              flush=True)

"""Study files: one reproducible TOML file declares bases, variants to tune, evaluation and report.

``spec`` reads a file (variables, overrides, structure), ``plan`` turns it into checked steps (argument
lists of ``train tune`` and ``evaluate``), ``run`` runs the steps not done yet, ``record`` is what every
card, summary and report stores about the study.
"""

from robustbench_ofa.study.plan import Step, build_steps
from robustbench_ofa.study.record import RECORD_FILE, read_study_record
from robustbench_ofa.study.run import run_study
from robustbench_ofa.study.spec import StudySpec, load_study

__all__ = ["RECORD_FILE", "Step", "StudySpec", "build_steps", "load_study", "read_study_record", "run_study"]

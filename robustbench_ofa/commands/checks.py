"""Checks of command-line values that need no model, run before any work starts (one line each).

``robust-ofa evaluate`` calls ``evaluate_args`` first, so a wrong ``--out`` or a mistyped report
format is refused at once rather than after a long run (or with a traceback). ``robust-ofa report``
makes the same checks in ``write_reports``.
"""

from __future__ import annotations

from robustbench_ofa.commands.report import parse_formats
from robustbench_ofa.evaluation.store import STORE_FILE
from robustbench_ofa.io import check_output_dir


def report_formats(value: str, option: str = "--report") -> list[str]:
    """The report formats of a comma-separated ``value`` ('' means none), validated against the writers."""
    if not value.strip(" ,"):
        return []
    return parse_formats(value, option=option)


def evaluate_args(args) -> None:
    """What ``robust-ofa evaluate`` can check before building or loading anything: ``--out`` and ``--report``."""
    check_output_dir(args.out, "--out", keep=(STORE_FILE,))
    report_formats(args.report, "--report")

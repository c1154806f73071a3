"""The study record: what a study run stores about its study file, next to its outputs and on every card.

Why a record and not only a path: the file can be edited (or deleted) after the run. The record keeps the
file's SHA-256 and full text plus the variables and overrides it ran with, so a variant card, a
``summary.json`` or a report can always be traced back to the exact study, and a rerun with a changed file
over an old run's folder is detected.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.io import atomic_write_text

RECORD_FILE = "study.json"
#: Fields two records must share for a run's folder to be continued (the file and what was set on it).
IDENTITY = ("sha256", "vars", "overrides")


def read_study_record(path: str | Path | None) -> dict[str, Any]:
    """The record at ``path`` (``{}`` for None); one line naming the file when it is missing or broken."""
    if path is None:
        return {}
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RobustOFAError(f"{path}: study record not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RobustOFAError(f"{path}: study record is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not all(k in data for k in ("name", *IDENTITY)):
        raise RobustOFAError(f"{path}: expected a study record with fields name, {', '.join(IDENTITY)}")
    return data


def write_study_record(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n")


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Which identity fields differ between two records (empty: the same study, set the same way)."""
    return [k for k in IDENTITY if old.get(k) != new.get(k)]

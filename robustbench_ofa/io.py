"""File helpers shared by the whole package: atomic writes and the checks that precede reading or writing.

Atomic means: the content goes to ``NAME.tmp`` next to the target, which is then renamed over it with
``os.replace``, so a crash never leaves a half-written file under the real name. The finished file gets
the permissions any new file gets under the process umask (``0644`` under the usual ``022``), whatever
the writer used for its temporary file: safetensors, for one, creates its files ``0600``, which made a
zoo shared between users unreadable to all but its builder.

The checks turn what would otherwise surface as a traceback, or as a library's misleading wording (the
safetensors library reports an unreadable file as "No such file or directory"), into one line saying
what is wrong with which path, before any work starts.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from robustbench_ofa.errors import RobustOFAError


# -- permissions -------------------------------------------------------------------------------------
def current_umask() -> int:
    """The process umask; read from ``/proc`` where possible, so it is never changed, even briefly."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The permission bits a newly created regular file gets under the current umask."""
    return 0o666 & ~current_umask()


# -- atomic writes -----------------------------------------------------------------------------------
def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` to create the file at a temporary path, then move it over ``path``.

    The parent folder is created if needed; on failure the temporary file is removed and the old
    ``path`` (if any) is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write a text file (UTF-8) atomically."""
    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    return atomic_write(path, write)


# -- checks ------------------------------------------------------------------------------------------
def check_readable(path: str | Path, what: str = "file") -> None:
    """A one-line "permission denied" for an existing file (or folder) the user cannot read.

    A missing path passes: saying so is the caller's business, in its own words.
    """
    path = Path(path)
    if not os.path.exists(path):
        return
    mode = os.R_OK | os.X_OK if os.path.isdir(path) else os.R_OK
    if not os.access(path, mode):
        raise RobustOFAError(f"{path}: permission denied (cannot read this {what})")


def output_dir_problem(path: str | Path, keep: tuple[str, ...] = ()) -> str | None:
    """Why ``path`` cannot be used (created if missing, then written) as an output folder, or None.

    ``keep`` names files inside it that a run reads and rewrites (a results database): they must be
    readable and writable too when they already exist.
    """
    target = Path(path).expanduser().absolute()
    if os.path.islink(target) and not os.path.exists(target):
        return f"is a broken symbolic link (to {os.readlink(target)})"
    for candidate in (target, *target.parents):
        try:
            os.stat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except PermissionError:
            return f"permission denied (cannot look inside {candidate.parent})"
        break
    else:  # not even the root exists: nothing sensible to say beyond this
        return f"cannot create it (no existing folder above {target})"
    if not os.path.isdir(candidate):
        if candidate == target:
            return "exists and is not a folder (expected an output directory)"
        return f"cannot create it: {candidate} is a file, not a folder"
    if not os.access(candidate, os.W_OK | os.X_OK):
        if candidate == target:
            return "permission denied (the folder is not writable)"
        return f"permission denied (cannot create it in {candidate}, which is not writable)"
    if candidate == target:
        for name in keep:
            inner = target / name
            if os.path.exists(inner) and not os.access(inner, os.R_OK | os.W_OK):
                return f"permission denied ({name} in it is not readable and writable)"
    return None


def check_output_dir(value: str | Path, option: str = "--out", keep: tuple[str, ...] = ()) -> Path:
    """``value`` as a folder that can be created and written, else one line naming the option and why."""
    problem = output_dir_problem(value, keep)
    if problem:
        raise RobustOFAError(f"{option} {value}: {problem}")
    return Path(value)

"""Where robust-ofa keeps what it builds or is told about: the embedded zoo and the user registry.

Resolution order: an explicit ``home`` (the CLI's ``--home``), then the ``ROBUST_OFA_HOME`` environment
variable, then ``~/.cache/robust-ofa`` (``$XDG_CACHE_HOME/robust-ofa`` when that is set). Generated
artefacts never go inside the package folder, so an installed package stays read-only.
"""

from __future__ import annotations

import os
from pathlib import Path

from robustbench_ofa.errors import RobustOFAError

ENV_VAR = "ROBUST_OFA_HOME"
REGISTRY_FILE = "registry.json"
ZOO_DIR = "zoo"


def resolve_home(home: str | Path | None = None) -> Path:
    """The cache directory to use (not created here)."""
    if home is not None and str(home).strip():
        path = Path(home).expanduser()
    elif os.environ.get(ENV_VAR, "").strip():
        path = Path(os.environ[ENV_VAR]).expanduser()
    else:
        cache = os.environ.get("XDG_CACHE_HOME", "").strip()
        path = (Path(cache).expanduser() if cache else Path.home() / ".cache") / "robust-ofa"
    if path.exists() and not path.is_dir():
        raise RobustOFAError(f"robust-ofa home {path} exists but is not a directory (set --home or ${ENV_VAR})")
    return path


def ensure_home(home: str | Path | None = None) -> Path:
    """``resolve_home`` and create it, with a one-line error if that is not possible."""
    path = resolve_home(home)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RobustOFAError(f"cannot create robust-ofa home {path}: {exc.strerror} (set --home or ${ENV_VAR})") from None
    return path

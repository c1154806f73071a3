"""Reading and writing weight files without ever unpickling arbitrary objects.

safetensors files are read directly. Pickle-based files (``pytorch_model.bin``, fairseq ``.pt``) go
through ``torch.load(weights_only=True)``; fairseq checkpoints also carry training state (an argparse
``Namespace`` or an omegaconf config) that ``weights_only`` rejects, so those are read with a
restricted unpickler that builds tensors and plain containers and turns every other class into an inert
placeholder whose constructor is never called. Nothing from the file can run code.
"""

from __future__ import annotations

import os
import pickle
import types
import zipfile
from pathlib import Path

import torch

from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.io import atomic_write, check_readable

#: Callables a weights file may legitimately reference; everything else becomes a placeholder.
_ALLOWED = {
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor_v3"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch", "Size"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "slice"),
    ("builtins", "complex"),
}


class OpaqueObject:
    """Stands in for a non-tensor object in a checkpoint (training args, configs): holds nothing."""

    qualname = "?"

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __repr__(self) -> str:
        return f"<opaque {self.qualname}>"


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED or (module == "torch" and name.endswith("Storage")):
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        return type(name, (OpaqueObject,), {"qualname": f"{module}.{name}"})


_restricted_pickle = types.SimpleNamespace(Unpickler=_RestrictedUnpickler, load=pickle.load,
                                           __name__="robustbench_ofa_restricted_pickle")


def _check_file(path: Path) -> None:
    try:
        size = os.stat(path).st_size
    except (FileNotFoundError, NotADirectoryError):
        raise RobustOFAError(f"{path}: weight file not found") from None
    except PermissionError:
        raise RobustOFAError(f"{path}: permission denied (cannot reach the weight file)") from None
    # before the readers: safetensors reports an unreadable file as "No such file or directory"
    check_readable(path, "weight file")
    if size == 0:
        raise RobustOFAError(f"{path}: weight file is empty")


def load_state_file(path: str | Path, allow_training_state: bool = False) -> dict:
    """Load a safetensors or torch weight file into a dict, refusing anything that needs arbitrary code.

    ``allow_training_state`` permits fairseq checkpoints' non-tensor entries (as inert placeholders).
    """
    path = Path(path)
    _check_file(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise RobustOFAError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not allow_training_state:
            raise RobustOFAError(
                f"{path}: refused: the file needs arbitrary unpickling ({_first_line(exc)}); "
                "convert it to safetensors or save only its tensors"
            ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise RobustOFAError(f"{path}: truncated or corrupt weight file ({_first_line(exc)})") from None
    try:
        return torch.load(path, map_location="cpu", pickle_module=_restricted_pickle)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, pickle.UnpicklingError) as exc:
        raise RobustOFAError(f"{path}: truncated or corrupt weight file ({_first_line(exc)})") from None


def save_state_file(state: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write tensors as safetensors atomically (a crash never leaves a half-written file in place).

    The file gets the umask's permissions (``0644`` under umask 022), not safetensors' own ``0600``, so a
    zoo or variant folder shared between users stays readable.
    """
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__

"""Strict checkpoint loading for OFA (HF-format directories and fairseq ``.pt`` files).

Strict means: every learned tensor the model has must be in the file with the same shape, and the file
may hold nothing else, except the index buffers (recomputed from the config) and the aliases of the tied
token embedding. Any mismatch is reported in one line naming the keys.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from transformers.modeling_utils import no_init_weights

from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.io import check_readable
from robustbench_ofa.models.checkpoint_io import load_state_file, save_state_file
from robustbench_ofa.models.config import OFAConfig
from robustbench_ofa.models.fairseq import convert_fairseq_state_dict, infer_config_fields
from robustbench_ofa.models.modeling import INDEX_BUFFERS, OFAModel

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
#: Keys that alias the one shared token embedding.
TIED_KEYS = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "decoder.output_projection.weight")


def _is_index_buffer(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in INDEX_BUFFERS


def _fmt(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_weights_strict(model: OFAModel, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy ``state`` into ``model`` or raise a one-line error listing missing/unexpected/mis-shaped keys."""
    state = {k: v for k, v in state.items() if not _is_index_buffer(k)}
    expected = model.state_dict()
    tied = model.config.share_decoder_input_output_embed
    if tied:
        present = [k for k in TIED_KEYS if k in state]
        if present:
            for k in TIED_KEYS:
                state.setdefault(k, state[present[0]])
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mis = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or mis:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s): {_fmt(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s): {_fmt(unexpected)}")
        if mis:
            shapes = [f"{k} file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}" for k in mis]
            parts.append(f"shape mismatch: {_fmt(shapes, 3)}")
        raise RobustOFAError(f"{source}: checkpoint does not match the model config; " + "; ".join(parts))
    with torch.no_grad():
        model.load_state_dict(state, strict=True)


def read_config(path: Path) -> OFAConfig:
    try:
        fields = json.loads(path.read_text())
    except FileNotFoundError:
        raise RobustOFAError(f"{path}: config.json not found") from None
    except json.JSONDecodeError as exc:
        raise RobustOFAError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(fields, dict):
        raise RobustOFAError(f"{path}: expected a JSON object of config fields")
    if fields.get("model_type", "ofa") != "ofa":
        raise RobustOFAError(f"{path}: field 'model_type': expected 'ofa', got {fields['model_type']!r}")
    try:
        return OFAConfig(**fields)
    except (TypeError, ValueError) as exc:
        raise RobustOFAError(f"{path}: invalid config field ({exc})") from None


def weight_file(directory: Path) -> Path:
    for name in WEIGHT_FILES:
        if (directory / name).exists():
            return directory / name
    raise RobustOFAError(f"{directory}: no weight file (expected one of {', '.join(WEIGHT_FILES)})")


def load_pretrained(path: str | Path, device: str | torch.device = "cpu") -> OFAModel:
    """Load an OFA-Sys HF-format directory (config.json + model.safetensors or pytorch_model.bin)."""
    directory = Path(path)
    if not directory.is_dir():
        raise RobustOFAError(f"{directory}: not a checkpoint directory")
    config = read_config(directory / "config.json")
    wfile = weight_file(directory)
    state = load_state_file(wfile)
    # No random init (most of the time to build OFA-base, 1.1 of 1.3 s): every parameter and persistent
    # buffer is loaded below, strictly.
    with no_init_weights():
        model = OFAModel(config)
    load_weights_strict(model, state, str(wfile))
    model.source_path = str(directory)
    return model.to(device).eval()


def save_pretrained(model: OFAModel, path: str | Path) -> Path:
    """Write config.json and model.safetensors (the tied embedding stored once)."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(str(directory))
    state = {k: v for k, v in model.state_dict().items() if not _is_index_buffer(k)}
    if model.config.share_decoder_input_output_embed:
        for k in TIED_KEYS[1:]:
            state.pop(k, None)
    save_state_file(state, directory / "model.safetensors", metadata={"format": "pt"})
    return directory


class StateExtension(Protocol):
    """Modules some checkpoints add to OFA (a tuning method's), recognised by their tensors.

    Tuning methods register themselves here (``robustbench_ofa.tuning`` does it for every registered
    method), so this module loads their checkpoints without knowing any method's tensor names.
    """

    name: str

    def detect(self, state: Mapping[str, torch.Tensor], config: OFAConfig) -> dict[str, Any] | None:
        """The modules' hyper-parameters if their tensors are in ``state`` (HF names), else None."""

    def attach(self, model: OFAModel, hparams: Mapping[str, Any]) -> None:
        """Add the modules to ``model`` before its weights are loaded."""


_EXTENSIONS: dict[str, StateExtension] = {}


def register_state_extension(extension: StateExtension) -> StateExtension:
    """Make ``load_fairseq`` recognise ``extension``'s tensors (a later one of the same name replaces it)."""
    _EXTENSIONS[extension.name] = extension
    return extension


def state_extensions() -> list[StateExtension]:
    """The registered extensions, by name."""
    return [_EXTENSIONS[n] for n in sorted(_EXTENSIONS)]


def detect_extensions(state: Mapping[str, torch.Tensor], config: OFAConfig,
                      extensions: Sequence[StateExtension] | None = None) -> list[tuple[StateExtension, dict]]:
    """(extension, hyper-parameters) of every extension whose tensors appear in a converted state dict."""
    found = []
    for ext in state_extensions() if extensions is None else extensions:
        hparams = ext.detect(state, config)
        if hparams is not None:
            found.append((ext, dict(hparams)))
    return found


def load_fairseq(path: str | Path, config: OFAConfig | None = None,
                 extensions: Sequence[StateExtension] | None = None) -> OFAModel:
    """Load an OFA fairseq checkpoint (``.pt`` with a ``model`` dict), incl. tuned variants.

    Without ``config`` the architecture is inferred from tensor shapes. Extra modules are recreated by
    the extension that recognises their tensors: one of ``extensions``, or by default of the registered
    ones (every tuning method, once ``robustbench_ofa.tuning`` is imported). Methods that add no modules
    (BitFit) give plain full checkpoints.
    """
    path = Path(path)
    ckpt = load_state_file(path, allow_training_state=True)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise RobustOFAError(f"{path}: field 'model': expected a fairseq checkpoint holding a 'model' state dict")
    state = convert_fairseq_state_dict(ckpt["model"])
    if config is None:
        config = OFAConfig(**infer_config_fields(state))
    with no_init_weights():  # every parameter is loaded below (strictly)
        model = OFAModel(config)
    for ext, hparams in detect_extensions(state, config, extensions):
        ext.attach(model, hparams)
    try:
        load_weights_strict(model, state, str(path))
    except RobustOFAError as exc:
        if extensions is None and not _EXTENSIONS:
            raise RobustOFAError(f"{exc} (no tuning method is registered to recognise extra tensors: "
                                 "import robustbench_ofa.tuning first)") from None
        raise
    model.source_path = str(path)
    return model.eval()


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    check_readable(path, "weight file")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _from_pretrained(cls, path, device="cpu", **_ignored) -> OFAModel:
    """Load an OFA-Sys HF-format directory strictly (``load_pretrained``)."""
    return load_pretrained(path, device)


def _save_pretrained(self, path, **_ignored):
    """Write ``config.json`` + ``model.safetensors``; round-trips through ``from_pretrained``."""
    return save_pretrained(self, path)


# Attached here, not in ``modeling`` (which loading imports): the model module does not know about files.
# ``robustbench_ofa.models`` imports this module, so every OFAModel has them.
OFAModel.from_pretrained = classmethod(_from_pretrained)
OFAModel.save_pretrained = _save_pretrained

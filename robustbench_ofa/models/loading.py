"""Strict checkpoint loading for OFA (HF-format directories and fairseq ``.pt`` files).

Strict means: every learned tensor the model has must be in the file with the same shape, and the file
may hold nothing else, except the index buffers (recomputed from the config) and the aliases of the tied
token embedding. Any mismatch is reported in one line naming the keys.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.models.checkpoint_io import load_state_file, save_state_file
from robustbench_ofa.models.config import OFAConfig
from robustbench_ofa.models.fairseq import convert_fairseq_state_dict, infer_config_fields, infer_tuning
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


def load_fairseq(path: str | Path, config: OFAConfig | None = None) -> OFAModel:
    """Load an OFA fairseq checkpoint (``.pt`` with a ``model`` dict), incl. prompt/adapter variants.

    Without ``config`` the architecture is inferred from tensor shapes. Prompt and adapter modules are
    recreated from their tensors' shapes; BitFit checkpoints are plain full checkpoints.
    """
    from robustbench_ofa.tuning import get_method

    path = Path(path)
    ckpt = load_state_file(path, allow_training_state=True)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise RobustOFAError(f"{path}: field 'model': expected a fairseq checkpoint holding a 'model' state dict")
    state = convert_fairseq_state_dict(ckpt["model"])
    if config is None:
        config = OFAConfig(**infer_config_fields(state))
    model = OFAModel(config)
    for name, hparams in infer_tuning(state, config):
        get_method(name, **hparams).add_modules(model)
    load_weights_strict(model, state, str(path))
    model.source_path = str(path)
    return model.eval()


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()

"""Tuned variants on disk: a reference to the base checkpoint plus only the trainable tensors.

A variant folder holds ``variant.json`` (method, hyper-parameters, task, trainable parameter count,
base path and the SHA-256 of the base weight file) and ``trainable.safetensors``. A prompt-tuned
OFA-base is therefore a few MB rather than a copy of the whole model. Loading checks the base hash, so a
variant is never silently applied to a different base.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.models.checkpoint_io import load_state_file, save_state_file
from robustbench_ofa.models.loading import file_sha256, load_pretrained, weight_file
from robustbench_ofa.models.modeling import OFAModel
from robustbench_ofa.tuning.base import count_trainable, get_method, trainable_state

CARD_FILE = "variant.json"
TENSOR_FILE = "trainable.safetensors"


@dataclass
class VariantCard:
    """What a variant is: enough to rebuild it from its base and to report it."""

    name: str
    method: str
    hparams: dict[str, Any]
    task: str
    base_path: str
    base_sha256: str
    trainable_params: int
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> VariantCard:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise RobustOFAError(f"{path}: variant card not found") from None
        except json.JSONDecodeError as exc:
            raise RobustOFAError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
        missing = [f for f in ("name", "method", "hparams", "task", "base_path", "base_sha256",
                               "trainable_params") if f not in data]
        if missing:
            raise RobustOFAError(f"{path}: field '{missing[0]}' is missing from the variant card")
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


def save_variant(model: OFAModel, out_dir: str | Path, *, name: str, task: str, base_dir: str | Path,
                 extra: dict | None = None) -> Path:
    """Save the trainable tensors of ``model`` (tuned with ``model.tuning_method``) as a variant."""
    method = getattr(model, "tuning_method", None)
    if method is None:
        raise RobustOFAError("save_variant: the model has no tuning method applied")
    base_dir = Path(base_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_state_file(trainable_state(model), out / TENSOR_FILE)
    card = VariantCard(name=name, method=method.name, hparams=method.config.to_dict(), task=task,
                       base_path=str(base_dir.resolve()), base_sha256=file_sha256(weight_file(base_dir)),
                       trainable_params=count_trainable(model), extra=extra or {})
    tmp = out / (CARD_FILE + ".tmp")
    tmp.write_text(json.dumps(asdict(card), indent=2, sort_keys=True))
    tmp.replace(out / CARD_FILE)
    return out


def load_variant(path: str | Path, base_dir: str | Path | None = None, device: str = "cpu") -> OFAModel:
    """Rebuild a variant: load its base (the card's, or ``base_dir``), check the hash, apply the method."""
    path = Path(path)
    card = VariantCard.read(path / CARD_FILE)
    base = Path(base_dir) if base_dir is not None else Path(card.base_path)
    wfile = weight_file(base)
    digest = file_sha256(wfile)
    if digest != card.base_sha256:
        raise RobustOFAError(
            f"{path}: variant was tuned from a base with sha256 {card.base_sha256[:12]}, "
            f"but {wfile} has {digest[:12]}; refusing to load it onto a different base"
        )
    model = load_pretrained(base, device)
    method = get_method(card.method, **card.hparams)
    method.apply(model)
    state = load_state_file(path / TENSOR_FILE)
    expected = trainable_state(model)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise RobustOFAError(
            f"{path / TENSOR_FILE}: does not match method {card.method!r}: "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    params = dict(model.named_parameters())
    with torch.no_grad():
        for k, v in state.items():
            if params[k].shape != v.shape:
                raise RobustOFAError(f"{path / TENSOR_FILE}: tensor {k} has shape {tuple(v.shape)}, "
                                     f"expected {tuple(params[k].shape)}")
            params[k].copy_(v)
    model.variant_card = card
    return model.eval()

"""Tuned variants on disk: a reference to the base checkpoint plus only the trainable tensors.

A variant folder holds ``trainable.safetensors`` and one card, ``card.json`` (a ``ModelCard``: method,
hyper-parameters, tasks, trainable parameter count, the base's folder and the SHA-256 of the base weight
file and of the tensors, plus whatever the training run adds: clean metrics, training config, data).
A prompt-tuned OFA-base is therefore a few MB rather than a copy of the whole model. Loading checks the
base hash, so a variant is never silently applied to a different base.

Folders written before card version 2 hold two cards: ``variant.json`` (what loading needed) next to
``card.json``, or ``variant.json`` alone. Both layouts are still read (``read_variant_card``); saving
writes ``card.json`` only and removes a stale ``variant.json``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch

from robustbench_ofa.cards import CARD_FILE, ModelCard, read_json
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.models.checkpoint_io import load_state_file, save_state_file
from robustbench_ofa.models.loading import file_sha256, load_pretrained, weight_file
from robustbench_ofa.models.modeling import OFAModel
from robustbench_ofa.tuning.base import count_trainable, get_method, trainable_state

TENSOR_FILE = "trainable.safetensors"
#: The variant card of the old layout (read, no longer written).
LEGACY_CARD_FILE = "variant.json"
_LEGACY_REQUIRED = ("name", "method", "hparams", "task", "base_path", "base_sha256", "trainable_params")

__all__ = ["CARD_FILE", "LEGACY_CARD_FILE", "TENSOR_FILE", "is_variant_folder", "load_variant",
           "read_variant_card", "save_variant"]


def is_variant_folder(path: str | Path) -> bool:
    """Whether ``path`` holds a tuned variant (its tensors, or an old-layout variant card)."""
    path = Path(path)
    return (path / TENSOR_FILE).is_file() or (path / LEGACY_CARD_FILE).is_file()


def _tasks(task: str | Sequence[str]) -> list[str]:
    return [t for t in task.split(",") if t] if isinstance(task, str) else list(task)


def save_variant(model: OFAModel, out_dir: str | Path, *, name: str, task: str | Sequence[str],
                 base_dir: str | Path, card: ModelCard | None = None) -> Path:
    """Save the trainable tensors of ``model`` (tuned with ``model.tuning_method``) and its one card.

    ``card`` carries what the caller knows (clean metrics, training config, data, ...); the fields that
    describe the variant itself (method, hyper-parameters, parameter counts, base folder, hashes) are
    filled in here. ``task`` is a comma-separated string or a list of tasks.
    """
    method = getattr(model, "tuning_method", None)
    if method is None:
        raise RobustOFAError("save_variant: the model has no tuning method applied")
    base_dir = Path(base_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_state_file(trainable_state(model), out / TENSOR_FILE)
    card = card or ModelCard(name=name, method=method.name, tasks=_tasks(task), source="user")
    card = dataclasses.replace(
        card, name=name, method=method.name, tasks=_tasks(task), hparams=method.config.to_dict(),
        base_path=str(base_dir.resolve()), trainable_params=count_trainable(model),
        total_params=sum(p.numel() for p in model.parameters()),
        sha256={"base": file_sha256(weight_file(base_dir)), "variant": file_sha256(out / TENSOR_FILE)},
    )
    card.write(out)
    (out / LEGACY_CARD_FILE).unlink(missing_ok=True)
    return out


def read_variant_card(path: str | Path) -> ModelCard:
    """The card of a variant folder, whichever layout it has.

    ``card.json`` (the current layout; in the old two-file layout its base folder comes from
    ``variant.json``), or an old ``variant.json`` alone (converted: base given by path, status
    "registered").
    """
    path = Path(path)
    legacy = path / LEGACY_CARD_FILE
    if (path / CARD_FILE).is_file():
        card = ModelCard.read(path)
        if legacy.is_file() and (card.base_path is None or "base" not in card.sha256):
            old = _read_legacy(legacy)
            card.base_path = card.base_path or old["base_path"]
            card.sha256 = {"base": old["base_sha256"], **card.sha256}
        return card
    if not legacy.is_file():
        raise RobustOFAError(f"{path / CARD_FILE}: variant card not found")
    old = _read_legacy(legacy)
    tensors = path / TENSOR_FILE
    sha = {"base": old["base_sha256"]}
    if tensors.is_file():
        sha["variant"] = file_sha256(tensors)
    card = ModelCard(name=old["name"], method=old["method"], tasks=_tasks(old["task"]), base=old["base_path"],
                     base_path=old["base_path"], hparams=dict(old["hparams"]),
                     trainable_params=old["trainable_params"], sha256=sha, source="user", status="registered",
                     card_version=1)
    card.path = str(path.resolve())
    return card


def _read_legacy(path: Path) -> dict:
    data = read_json(path, "variant card")
    if not isinstance(data, dict):
        raise RobustOFAError(f"{path}: expected a JSON object (a variant card)")
    missing = [f for f in _LEGACY_REQUIRED if f not in data]
    if missing:
        raise RobustOFAError(f"{path}: field '{missing[0]}' is missing from the variant card")
    return data


def load_variant(path: str | Path, base_dir: str | Path | None = None, device: str = "cpu") -> OFAModel:
    """Rebuild a variant: load its base (the card's, or ``base_dir``), check the hash, apply the method."""
    path = Path(path)
    card = read_variant_card(path)
    where = path / CARD_FILE
    if base_dir is None and not card.base_path:
        raise RobustOFAError(f"{where}: the card names no base folder (field 'base_path'); pass the base")
    expected = card.sha256.get("base")
    if not expected:
        raise RobustOFAError(f"{where}: the card has no base hash (field 'sha256.base')")
    base = Path(base_dir) if base_dir is not None else Path(card.base_path)
    wfile = weight_file(base)
    digest = file_sha256(wfile)
    if digest != expected:
        raise RobustOFAError(
            f"{path}: variant was tuned from a base with sha256 {expected[:12]}, "
            f"but {wfile} has {digest[:12]}; refusing to load it onto a different base"
        )
    model = load_pretrained(base, device)
    method = get_method(card.method, **card.hparams)
    method.apply(model)
    state = load_state_file(path / TENSOR_FILE)
    expected_state = trainable_state(model)
    missing = sorted(set(expected_state) - set(state))
    unexpected = sorted(set(state) - set(expected_state))
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

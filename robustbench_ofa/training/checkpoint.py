"""Resumable training checkpoints, written atomically.

A checkpoint holds what changes during training and nothing else: the trainable parameters and the
buffers (BatchNorm statistics), the optimiser state, the step, and every RNG state (torch CPU/CUDA,
Python, numpy), so a resumed run reproduces the uninterrupted run's weights exactly. Frozen base
weights are not stored: the caller rebuilds the model the same way before resuming, which keeps a
prompt-tuning checkpoint of OFA-large at a few MB.

Atomic means: the file is written to ``NAME.tmp``, flushed to disk, then renamed over the old one with
``os.replace``. A crash (or a full disk) mid-write leaves the previous checkpoint intact.
Only tensors and plain containers are stored, so loading uses ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.models.checkpoint_io import load_state_file

CHECKPOINT_FILE = "checkpoint.pt"
FORMAT_VERSION = 1


def checkpoint_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / CHECKPOINT_FILE


def training_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Trainable parameters plus all persistent buffers, by state-dict name."""
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n for n, _ in model.named_buffers()}
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k in trainable or k in buffers}


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": json.dumps(random.getstate()),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    py = json.loads(state["python"])
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to ``path`` via a flushed temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def save_checkpoint(out_dir: str | Path, *, model: nn.Module, optimizer: torch.optim.Optimizer, step: int,
                    total: int, run_key: dict[str, Any], rng_ranks: list[dict[str, Any]] | None = None) -> Path:
    """Write the resumable state after ``step`` completed optimiser steps. Under torchrun (rank 0 writes)
    ``rng_ranks`` holds every rank's random state, in rank order; the data position is the step (the
    batch plan is a function of seed and step)."""
    path = checkpoint_path(out_dir)
    extra: dict[str, Any] = {}
    if rng_ranks is not None and len(rng_ranks) > 1:
        extra = {"world": len(rng_ranks), "rng_ranks": rng_ranks}
    atomic_torch_save({
        **extra,
        "format": FORMAT_VERSION,
        "step": step,
        "total": total,
        "run_key": json.dumps(run_key, sort_keys=True),
        "model": training_state(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": {"step": step},
        "rng": rng_ranks[0] if rng_ranks else rng_state(),
    }, path)
    return path


def load_checkpoint(path: str | Path, run_key: dict[str, Any]) -> dict[str, Any]:
    """Read a checkpoint and check that it was written by the same run (config, method, data)."""
    path = Path(path)
    state = load_state_file(path)
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION or "run_key" not in state:
        raise RobustOFAError(f"{path}: not a robust-ofa training checkpoint (format {FORMAT_VERSION})")
    saved = json.loads(state["run_key"])
    expected = json.loads(json.dumps(run_key, sort_keys=True))
    if saved != expected:
        diff = sorted(k for k in set(saved) | set(expected) if saved.get(k) != expected.get(k))
        raise RobustOFAError(
            f"{path}: checkpoint was written by a different run (field '{diff[0]}' differs); "
            "use another output folder or delete the checkpoint to start over"
        )
    return state


def restore(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any], path: str | Path,
            rank: int = 0, world: int = 1) -> int:
    """Load model/optimizer/RNG state from a checkpoint dict; returns the completed step count. The random
    state is restored only for a job of the world size that wrote it (each rank its own); another world
    size leaves it to the caller."""
    expected = training_state(model)
    missing = sorted(set(expected) - set(state["model"]))
    if missing:
        raise RobustOFAError(f"{path}: checkpoint lacks tensor '{missing[0]}' of the model being trained")
    with torch.no_grad():
        model.load_state_dict(state["model"], strict=False)
    optimizer.load_state_dict(state["optimizer"])
    if int(state.get("world", 1)) == world:
        set_rng_state(state["rng_ranks"][rank] if world > 1 else state["rng"])
    return int(state["step"])

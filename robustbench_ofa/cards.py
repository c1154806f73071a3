"""Model cards: a RobustBench-style JSON record per model folder (``card.json``).

A card says what a model is and how well it does on clean data, so robustness numbers can always be
read next to clean ones and traced back to the exact weights (SHA-256 of every weight file), recipe
(method, hyper-parameters, training config, data specs, seed) and software (package versions).

One card per folder, for base models and tuned variants alike; it is written by one function,
``robustbench_ofa.training.pipeline.train_evaluate_save`` (through ``tuning.variant.save_variant`` for
variants). Variant folders written before card version 2 also hold ``variant.json``; those are still
read (see ``tuning.variant.read_variant_card``).

This module sits low in the package (it needs only the task registry, for each task's headline metric)
so that tuning, training, the zoo and the commands can all use it without an upward import.
"""

from __future__ import annotations

import dataclasses
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.io import atomic_write_text
from robustbench_ofa.tasks import TASK_REGISTRY

CARD_FILE = "card.json"
#: 2: one file per folder (variants carry ``base_path``; no separate ``variant.json``).
CARD_VERSION = 2
REQUIRED = ("name", "method", "tasks")

__all__ = ["CARD_FILE", "CARD_VERSION", "REQUIRED", "ModelCard", "atomic_write_text", "package_versions"]


def package_versions() -> dict[str, str]:
    """Versions that can change a model's numbers."""
    import torch
    import transformers

    from robustbench_ofa import __version__

    return {"robust-ofa": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}


@dataclass
class ModelCard:
    """One model. ``clean`` maps task -> metric -> value (fractions in [0, 1], plus ``n``)."""

    name: str
    #: "pretrain" for a base model, else the tuning method's name.
    method: str
    tasks: list[str]
    #: Name (or path) of the base model a variant was tuned from; None for a base model.
    base: str | None = None
    #: Absolute folder of that base when the variant was saved (where it is loaded from by default).
    base_path: str | None = None
    hparams: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    clean: dict[str, dict[str, float]] = field(default_factory=dict)
    trainable_params: int = 0
    total_params: int = 0
    #: ``{"model": ...}`` for a full checkpoint; ``{"base": ..., "variant": ...}`` for a tuned variant.
    sha256: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    seed: int | None = None
    image_size: int | None = None
    build_seconds: float | None = None
    #: "embedded" (built by robust-ofa), "user" (registered by path) or "trained" (robust-ofa train).
    source: str = "embedded"
    #: "built", "not built" (an embedded entry before its first use) or "registered".
    status: str = "built"
    #: Where the weights live (absolute), filled in when the card is read from disk.
    path: str | None = None
    notes: str = ""
    #: Closed-answer tasks with a data-dependent answer set (VQA): task -> the file next to the card holding
    #: the set the model was tuned with, its size and SHA-256 (``tasks.answers``); evaluation uses it.
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The study that made this model (``robust-ofa study run``): its name, file, SHA-256, content and the
    #: variables it ran with, so a variant can always be traced back to the exact study file.
    study: dict[str, Any] = field(default_factory=dict)
    #: Adversarial training (``TrainConfig.adversarial()``: method, eps, steps, alpha, ratio[, beta]);
    #: empty for standard training. Reports label such variants "robust-trained".
    adversarial: dict[str, Any] = field(default_factory=dict)
    #: Training compute: sample forward+backward passes of the whole tuning run (a batch of 32 counts 32; None: unknown,
    #: e.g. a resumed run or a card from before it was recorded).
    train_grad_evals: int | None = None
    #: How training was executed, not what it computed: world size, micro-batch, accumulation steps,
    #: backend, activation checkpointing, BatchNorm handling (``training.parallel.execution_facts``).
    execution: dict[str, Any] = field(default_factory=dict)
    card_version: int = CARD_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def write(self, folder: str | Path) -> Path:
        """Write ``card.json`` into ``folder`` atomically (the stored ``path`` is left out: it moves)."""
        path = Path(folder) / CARD_FILE
        data = self.to_dict()
        data.pop("path")
        atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ModelCard:
        if not isinstance(data, dict):
            raise RobustOFAError(f"{where}: expected a JSON object (a model card)")
        for name in REQUIRED:
            if name not in data:
                raise RobustOFAError(f"{where}: field '{name}' is missing from the model card")
        if not isinstance(data["tasks"], list):
            raise RobustOFAError(f"{where}: field 'tasks': expected a list of task names")
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in data.items() if k in known}
        fields.setdefault("card_version", 1)  # cards before the version field existed
        return cls(**fields)

    @classmethod
    def read(cls, folder: str | Path) -> ModelCard:
        """Read ``folder/card.json``; ``path`` is set to the folder."""
        path = Path(folder) / CARD_FILE
        data = read_json(path, "model card")
        card = cls.from_dict(data, str(path))
        card.path = str(Path(folder).resolve())
        return card

    def main_metrics(self) -> dict[str, float]:
        """The headline clean metric of each task (``Task.main_metric``)."""
        out = {}
        for task, metrics in self.clean.items():
            key = TASK_REGISTRY.get(task).main_metric if task in TASK_REGISTRY else None
            if key in metrics:
                out[task] = metrics[key]
        return out


def read_json(path: Path, what: str) -> Any:
    """A JSON file's content, or a one-line error naming the file (missing, or invalid JSON)."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RobustOFAError(f"{path}: {what} not found") from None
    except json.JSONDecodeError as exc:
        raise RobustOFAError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None

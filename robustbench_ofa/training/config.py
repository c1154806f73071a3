"""TrainConfig: every knob of one training run, as a plain dataclass that round-trips through JSON.

Why one dataclass: a checkpoint records the config it was written under, and a resumed run refuses a
checkpoint written under a different config (resuming with another learning rate or batch size would not
reproduce the uninterrupted run). Cards and ablation tables store the same dict.

Defaults follow OFA's finetuning recipes where they carry over to small models: AdamW (betas 0.9/0.999,
eps 1e-8), linear warm-up over 6 % of the steps then linear decay, label smoothing 0.1, gradient
clipping at 1.0, weight decay 0.01. bf16 autocast is used only on CUDA (``bf16=None`` means "on when
the device is cuda"); CPU training stays in fp32 so CPU builds are bit-reproducible.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from robustbench_ofa.errors import RobustOFAError

DECAYS = ("linear", "cosine", "constant")
MIXES = ("alternate", "sum")


@dataclass
class TrainConfig:
    """Hyper-parameters and bookkeeping intervals of one training run."""

    lr: float = 1e-3
    #: Warm-up steps; ``None`` uses ``warmup_ratio`` of the total steps (OFA: 0.06).
    warmup_steps: int | None = None
    warmup_ratio: float = 0.06
    decay: str = "linear"
    #: Floor of the decayed learning rate, as a fraction of ``lr``.
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    label_smoothing: float = 0.1
    #: Gradient-norm clip; 0 disables clipping.
    clip_norm: float = 1.0
    batch_size: int = 32
    #: Total optimiser steps; if ``None``, ``epochs`` passes over the training data.
    max_steps: int | None = None
    epochs: float | None = None
    #: Multi-task batching: "alternate" (each step one task's batch) or "sum" (each step one batch of
    #: every task, gradients summed, as in OFA's multi-task pretraining).
    mix: str = "alternate"
    seed: int = 0
    device: str = "cpu"
    #: bf16 autocast; ``None`` = on when ``device`` is CUDA (never on CPU: it would break bit-reproducibility).
    bf16: bool | None = None
    #: Torch intra-op threads for the run (``None`` leaves torch's setting alone).
    num_threads: int | None = None
    eval_batch_size: int = 64
    #: Evaluate on the eval data every this many steps (0 = only at the end).
    eval_every: int = 0
    log_every: int = 10
    #: Write a resumable checkpoint every this many steps (0 = never, so no resume either).
    checkpoint_every: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.betas, list):
            self.betas = tuple(self.betas)
        self.validate()

    def validate(self) -> None:
        """Reject impossible settings with one-line errors naming the field."""
        def bad(name: str, expected: str) -> RobustOFAError:
            return RobustOFAError(f"training config field '{name}': expected {expected}, got {getattr(self, name)!r}")

        if not self.lr > 0:
            raise bad("lr", "a positive number")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise bad("warmup_steps", "an int >= 0")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise bad("warmup_ratio", "a number in [0, 1)")
        if self.decay not in DECAYS:
            raise bad("decay", f"one of {', '.join(DECAYS)}")
        if self.mix not in MIXES:
            raise bad("mix", f"one of {', '.join(MIXES)}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise bad("min_lr_ratio", "a number in [0, 1]")
        if self.weight_decay < 0:
            raise bad("weight_decay", "a number >= 0")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise bad("label_smoothing", "a number in [0, 1)")
        if self.clip_norm < 0:
            raise bad("clip_norm", "a number >= 0")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise bad("batch_size", "an int >= 1")
        if self.max_steps is None and self.epochs is None:
            raise RobustOFAError("training config: set 'max_steps' or 'epochs'")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps < 1):
            raise bad("max_steps", "an int >= 1")
        if self.epochs is not None and not self.epochs > 0:
            raise bad("epochs", "a positive number")
        for name in ("eval_batch_size",):
            if getattr(self, name) < 1:
                raise bad(name, "an int >= 1")
        for name in ("eval_every", "log_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise bad(name, "an int >= 0")
        if self.num_threads is not None and self.num_threads < 1:
            raise bad("num_threads", "an int >= 1")

    @property
    def use_bf16(self) -> bool:
        """Whether autocast to bf16 is on (auto: only on CUDA)."""
        if self.bf16 is None:
            return str(self.device).startswith("cuda")
        return bool(self.bf16) and str(self.device).startswith("cuda")

    def total_steps(self, steps_per_epoch: int) -> int:
        """Optimiser steps of the run given the data's batches per epoch."""
        if self.max_steps is not None:
            return self.max_steps
        return max(1, round(float(self.epochs) * steps_per_epoch))

    def warmup(self, total: int) -> int:
        return self.warmup_steps if self.warmup_steps is not None else int(round(self.warmup_ratio * total))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    def resume_key(self) -> dict[str, Any]:
        """The fields that change the trained weights (bookkeeping intervals and eval settings excluded)."""
        d = self.to_dict()
        for k in ("eval_batch_size", "eval_every", "log_every", "checkpoint_every", "num_threads"):
            d.pop(k)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "training config") -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise RobustOFAError(f"{where}: unknown field '{unknown[0]}'; valid: {', '.join(sorted(names))}")
        return cls(**data)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

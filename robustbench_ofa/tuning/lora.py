"""LoRA: W x + (alpha / r) * B A x on chosen linear layers, base weights frozen.

Written in-house rather than through PEFT so parameter names stay the model's own
(``...q_proj.weight`` plus ``...q_proj.lora_A``/``lora_B``) and a base checkpoint still loads into a
LoRA model unchanged. B starts at zero, so a fresh LoRA variant computes exactly the base model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.tuning.base import METHODS, MethodConfig, TuningMethod


class LoRALinear(nn.Linear):
    """An ``nn.Linear`` with a low-rank update; shares the wrapped layer's weight and bias."""

    @classmethod
    def wrap(cls, base: nn.Linear, rank: int, alpha: float, dropout: float) -> LoRALinear:
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        new.in_features, new.out_features = base.in_features, base.out_features
        new.weight = base.weight
        new.bias = base.bias
        new.rank, new.scaling = rank, alpha / rank
        new.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        new.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(new.lora_A, a=math.sqrt(5))
        new.lora_dropout = nn.Dropout(dropout)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight, self.bias)
        return out + F.linear(F.linear(self.lora_dropout(x), self.lora_A), self.lora_B) * self.scaling


@dataclass
class LoraConfig(MethodConfig):
    rank: int = field(default=8, metadata={"help": "rank(s)"})
    alpha: float = field(default=16.0, metadata={"help": "alpha(s); the update is scaled by alpha / rank"})
    targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"],
                               metadata={"help": "linear layers to adapt, '+'-separated (q_proj+v_proj)"})
    dropout: float = field(default=0.0, metadata={"help": "dropout on the LoRA input"})


@METHODS.register("lora")
class LoRA(TuningMethod):
    config_cls = LoraConfig
    default_lr = 3e-3
    grid_flags = {"lora-rank": "rank", "lora-alpha": "alpha"}

    def validate(self) -> None:
        c = self.config
        if c.rank < 1:
            raise RobustOFAError(f"lora: 'rank' must be >= 1, got {c.rank}")
        if isinstance(c.targets, str):
            c.targets = [t for t in c.targets.split(",") if t]
        if not c.targets:
            raise RobustOFAError("lora: 'targets' must name at least one linear layer (e.g. q_proj,v_proj)")

    def add_modules(self, model) -> None:
        c = self.config
        found = 0
        for stack in (model.encoder, model.decoder):
            for parent in stack.layers.modules():
                for child_name, child in list(parent.named_children()):
                    if child_name in c.targets and type(child) is nn.Linear:
                        setattr(parent, child_name, LoRALinear.wrap(child, c.rank, c.alpha, c.dropout))
                        found += 1
        if not found:
            raise RobustOFAError(f"lora: no linear layer named {', '.join(c.targets)} in the transformer layers")

    def trainable(self, name, param) -> bool:
        return name.endswith(".lora_A") or name.endswith(".lora_B")

    @classmethod
    def detect(cls, state, config) -> None:
        """Never: alpha is not stored in the tensors, and a LoRA rebuilt with a guessed alpha would compute
        another function than the checkpoint's (load LoRA variants with ``tuning.variant.load_variant``)."""
        return None

"""Bottleneck adapters (OFA's ``Adapter_Layer``): x + up(relu(down(x))) after each layer's FFN.

Placed where OFA places them: on the FFN output (after fc2 and dropout), before the residual add, in
every encoder and decoder layer. Initialised as OFA does ("bert": N(0, 0.02) weights, zero biases).
Parameter names (``layers.N.adapter.down_proj``/``up_proj``) match OFA's checkpoints.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.tuning.base import METHODS, MethodConfig, TuningMethod


class Adapter(nn.Module):
    def __init__(self, d_model: int, dim: int, scale: float = 1.0, dropout: float = 0.0, init_std: float = 0.02):
        super().__init__()
        self.down_proj = nn.Linear(d_model, dim)
        self.up_proj = nn.Linear(dim, d_model)
        self.scale = scale
        self.dropout = nn.Dropout(dropout)
        for lin in (self.down_proj, self.up_proj):
            nn.init.normal_(lin.weight, 0.0, init_std)
            nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.scale * self.up_proj(self.dropout(torch.relu(self.down_proj(x))))


@dataclass
class AdapterConfig(MethodConfig):
    dim: int = field(default=200, metadata={"help": "bottleneck size(s)"})
    scale: float = field(default=1.0, metadata={"help": "scale of the adapter's output"})
    dropout: float = field(default=0.0, metadata={"help": "dropout inside the adapter"})


_DOWN = ".adapter.down_proj.weight"


@METHODS.register("adapter")
class AdapterTuning(TuningMethod):
    config_cls = AdapterConfig
    default_lr = 3e-3
    grid_flags = {"adapter-dim": "dim"}

    def validate(self) -> None:
        if self.config.dim < 1:
            raise RobustOFAError(f"adapter: 'dim' must be >= 1, got {self.config.dim}")

    def add_modules(self, model) -> None:
        d = model.config.d_model
        for stack in (model.encoder, model.decoder):
            for layer in stack.layers:
                layer.adapter = Adapter(d, self.config.dim, self.config.scale, self.config.dropout,
                                        model.config.init_std).to(model.device)

    def trainable(self, name, param) -> bool:
        return ".adapter." in name

    @classmethod
    def micro_hparams(cls, hparams: Mapping[str, Any]) -> dict[str, Any]:
        return {**hparams, "dim": 4}

    @classmethod
    def detect(cls, state, config) -> dict[str, Any] | None:
        """The bottleneck size from the first layer's ``down_proj`` (scale and dropout are not in the tensors)."""
        down = state.get("encoder.layers.0" + _DOWN)
        if down is None:
            down = next((v for k, v in state.items() if k.endswith(_DOWN)), None)
        return None if down is None else {"dim": int(down.shape[0])}

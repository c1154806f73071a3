"""Bottleneck adapters (OFA's ``Adapter_Layer``): x + up(relu(down(x))) after each layer's FFN.

Placed where OFA places them: on the FFN output (after fc2 and dropout), before the residual add, in
every encoder and decoder layer. Initialised as OFA does ("bert": N(0, 0.02) weights, zero biases).
Parameter names (``layers.N.adapter.down_proj``/``up_proj``) match OFA's checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    dim: int = 200
    scale: float = 1.0
    dropout: float = 0.0


@METHODS.register("adapter")
class AdapterTuning(TuningMethod):
    name = "adapter"
    config_cls = AdapterConfig

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

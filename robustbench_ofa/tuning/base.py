"""The tuning-method interface: a method adds its modules to an OFAModel and freezes the rest.

Each method is a small class with a dataclass of hyper-parameters. ``apply`` must be deterministic in
which tensors it makes trainable, because a saved variant stores exactly those tensors and nothing else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.registry import Registry

METHODS: Registry[type[TuningMethod]] = Registry("tuning method")


@dataclass
class MethodConfig:
    """Base of every method's hyper-parameters (empty for finetuning)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class TuningMethod:
    """A way of turning a base OFA into a tuned variant."""

    name: ClassVar[str]
    config_cls: ClassVar[type[MethodConfig]] = MethodConfig
    #: True for methods that train a small subset; their BatchNorm statistics stay frozen.
    parameter_efficient: ClassVar[bool] = True

    def __init__(self, config: MethodConfig | None = None, **kwargs):
        if config is None:
            names = {f.name for f in dataclasses.fields(self.config_cls)}
            unknown = set(kwargs) - names
            if unknown:
                raise RobustOFAError(
                    f"{self.name}: unknown hyper-parameter(s) {', '.join(sorted(unknown))}; "
                    f"valid: {', '.join(sorted(names)) or 'none'}"
                )
            config = self.config_cls(**kwargs)
        self.config = config
        self.validate()

    def validate(self) -> None:
        """Raise RobustOFAError for invalid hyper-parameters."""

    def add_modules(self, model: nn.Module) -> None:
        """Attach the method's new modules (prompts, adapters, LoRA factors), if any."""

    def trainable(self, name: str, param: nn.Parameter) -> bool:
        """Whether the base or added parameter ``name`` trains under this method."""
        raise NotImplementedError

    def apply(self, model: nn.Module) -> nn.Module:
        """Add modules, set ``requires_grad`` exactly, and freeze BatchNorm statistics when efficient."""
        self.add_modules(model)
        for name, param in model.named_parameters():
            param.requires_grad_(self.trainable(name, param))
        model.freeze_batchnorm = self.parameter_efficient
        model.train(model.training)
        model.tuning_method = self
        return model


def get_method(name: str, **hparams) -> TuningMethod:
    """Instantiate a registered method by name with keyword hyper-parameters."""
    return METHODS.get(name)(**hparams)


def trainable_state(model: nn.Module) -> dict:
    """The tensors a variant file stores: every parameter with ``requires_grad``."""
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

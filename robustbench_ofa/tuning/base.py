"""The tuning-method interface: a method adds its modules to an OFAModel and freezes the rest.

Each method is one small class with a dataclass of hyper-parameters, registered with
``@METHODS.register(name)``. Everything else in robust-ofa asks the class, never branches on its name:

* ``default_lr``: the learning rate ``robust-ofa train tune`` uses without ``--lr`` (required: a class
  registered without one is refused at registration);
* ``grid_flags`` and ``parse_hparam``: which hyper-parameters have their own ``train tune`` flag, and
  how any hyper-parameter is read from the command line (comma lists of them run an ablation grid);
* ``detect`` / ``attach``: how to recognise the method's extra tensors in a checkpoint's state dict and
  rebuild its modules from them (the fairseq loader asks every registered method; ``models/`` itself
  knows no method's tensor names);
* ``micro_hparams``: its hyper-parameters scaled down for the seconds-long micro zoo and the tests.

``apply`` must be deterministic in which tensors it makes trainable, because a saved variant stores
exactly those tensors and nothing else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.models.loading import register_state_extension
from robustbench_ofa.registry import Registry

_TRUE = {"on", "true", "yes", "1"}
_FALSE = {"off", "false", "no", "0"}


@dataclass
class MethodConfig:
    """Base of every method's hyper-parameters (empty for finetuning).

    A field's ``metadata={"help": ...}`` is its command-line help.
    """

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class TuningMethod:
    """A way of turning a base OFA into a tuned variant."""

    #: The registered name (set by ``METHODS.register`` when the class does not set it).
    name: ClassVar[str]
    config_cls: ClassVar[type[MethodConfig]] = MethodConfig
    #: True for methods that train a small subset; their BatchNorm statistics stay frozen.
    parameter_efficient: ClassVar[bool] = True
    #: Peak learning rate ``robust-ofa train tune`` uses when ``--lr`` is not given. Every registered
    #: method must set it (there is no silent fallback).
    default_lr: ClassVar[float]
    #: Hyper-parameters with their own ``robust-ofa train tune`` flag: flag (without ``--``) -> config field.
    #: Every field can be set or swept with ``--hparam KEY=V1,V2`` in any case.
    grid_flags: ClassVar[Mapping[str, str]] = {}

    def __init__(self, config: MethodConfig | None = None, **kwargs):
        if config is None:
            names = set(self.hparam_names())
            unknown = set(kwargs) - names
            if unknown:
                raise RobustOFAError(
                    f"{self.name}: unknown hyper-parameter(s) {', '.join(sorted(unknown))}; "
                    f"valid: {', '.join(sorted(names)) or 'none'}"
                )
            config = self.config_cls(**kwargs)
        self.config = config
        self.validate()

    # -- hyper-parameters --------------------------------------------------------------------------
    @classmethod
    def hparam_names(cls) -> list[str]:
        """The method's hyper-parameters (its config's fields), in declaration order."""
        return [f.name for f in dataclasses.fields(cls.config_cls)]

    @classmethod
    def hparam_help(cls, key: str) -> str:
        """The help text of hyper-parameter ``key`` (its field's ``metadata["help"]``, else its name)."""
        fields = {f.name: f for f in dataclasses.fields(cls.config_cls)}
        return str(fields[key].metadata.get("help", key)) if key in fields else key

    @classmethod
    def parse_hparam(cls, key: str, text: str) -> Any:
        """One command-line value of hyper-parameter ``key``, converted to the field's type.

        Booleans accept on/off/true/false/yes/no/1/0; ``none`` gives None where the field allows it;
        list-valued hyper-parameters (LoRA targets) take ``+``-separated items, since commas separate
        grid values.
        """
        fields = {f.name: f for f in dataclasses.fields(cls.config_cls)}
        if key not in fields:
            raise RobustOFAError(f"{cls.name}: unknown hyper-parameter '{key}'; "
                                 f"valid: {', '.join(sorted(fields)) or 'none'}")
        kind = _type_text(fields[key])
        low = text.strip().lower()
        if "None" in kind and low == "none":
            return None
        if kind.startswith("bool"):
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise RobustOFAError(f"{cls.name}: hyper-parameter '{key}' expects on/off, got '{text}'")
        if kind.startswith("int"):
            return parse_number(int, key, text)
        if kind.startswith("float"):
            return parse_number(float, key, text)
        if kind.startswith("list"):
            return [t for t in text.split("+") if t]
        return text.strip()

    @classmethod
    def micro_hparams(cls, hparams: Mapping[str, Any]) -> dict[str, Any]:
        """``hparams`` scaled down for a micro model (the test zoo, the registry tests); default: unchanged."""
        return dict(hparams)

    # -- checkpoints -------------------------------------------------------------------------------
    @classmethod
    def detect(cls, state: Mapping[str, torch.Tensor], config: Any) -> dict[str, Any] | None:
        """Hyper-parameters of this method's modules if their tensors are in ``state`` (HF names), else None.

        ``config`` is the checkpoint's ``OFAConfig``. Methods that add no tensors (or whose
        hyper-parameters cannot be read off the tensors) return None.
        """
        return None

    @classmethod
    def attach(cls, model: nn.Module, hparams: Mapping[str, Any]) -> None:
        """Rebuild the method's modules on ``model`` (before its weights are loaded), nothing frozen."""
        cls(**hparams).add_modules(model)

    # -- applying ----------------------------------------------------------------------------------
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


def _type_text(f: dataclasses.Field) -> str:
    """A field's annotation as text ("int | None", "list[str]"), whether or not annotations are postponed."""
    if isinstance(f.type, str):
        return f.type
    if isinstance(f.type, type):
        return f.type.__name__
    return str(f.type).replace("typing.", "")


def parse_number(kind: type, key: str, text: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise RobustOFAError(f"hyper-parameter '{key}' expects {'an integer' if kind is int else 'a number'}, "
                             f"got '{text}'") from None


class MethodRegistry(Registry[type[TuningMethod]]):
    """The tuning-method registry; registering checks that the class declares what the rest relies on.

    A class that is not a ``TuningMethod``, has no ``default_lr``, a config that is not a
    ``MethodConfig`` dataclass, a grid flag naming no field (or one another method already has) is a
    ``TypeError`` at import time, not a surprise at the first ``robust-ofa train tune``.
    """

    def __init__(self, kind: str, on_register: Callable[[type[TuningMethod]], None] | None = None):
        super().__init__(kind)
        self._on_register = on_register

    def register(self, name: str) -> Callable[[type[TuningMethod]], type[TuningMethod]]:
        add = super().register(name)

        def deco(cls: type[TuningMethod]) -> type[TuningMethod]:
            self._check(name, cls)
            add(cls)
            if self._on_register is not None:
                self._on_register(cls)
            return cls

        return deco

    def _check(self, name: str, cls: Any) -> None:
        def bad(problem: str) -> TypeError:
            return TypeError(f"{self.kind} {name!r} ({getattr(cls, '__name__', cls)}): {problem}")

        if not (isinstance(cls, type) and issubclass(cls, TuningMethod)):
            raise bad("must be a subclass of TuningMethod")
        if "name" not in vars(cls):
            cls.name = name
        elif cls.name != name:
            raise bad(f"its class attribute name is {cls.name!r}, not the registered name")
        lr = getattr(cls, "default_lr", None)
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
            raise bad("set the class attribute default_lr (a positive learning rate, used when --lr is not "
                      f"given); got {lr!r}")
        config = cls.config_cls
        if not (isinstance(config, type) and issubclass(config, MethodConfig) and dataclasses.is_dataclass(config)):
            raise bad("config_cls must be a @dataclass subclass of MethodConfig")
        fields = set(cls.hparam_names())
        taken = {flag: other for other in self.names() if other != name for flag in self.get(other).grid_flags}
        for flag, key in cls.grid_flags.items():
            if key not in fields:
                raise bad(f"grid flag --{flag} names '{key}', which is not a hyper-parameter "
                          f"({', '.join(sorted(fields)) or 'none'})")
            if flag in taken:
                raise bad(f"grid flag --{flag} is already method {taken[flag]!r}'s")


#: Every registered method; registration also makes the fairseq loader recognise its tensors.
METHODS: MethodRegistry = MethodRegistry("tuning method", on_register=register_state_extension)


class GridFlag(NamedTuple):
    """A method hyper-parameter with its own ``robust-ofa train tune`` flag."""

    method: str
    key: str
    help: str


def grid_flags() -> dict[str, GridFlag]:
    """Every registered method's grid flags: argparse dest (``prompt_length``) -> method, field, help."""
    out = {}
    for name in METHODS.names():
        cls = METHODS.get(name)
        for flag, key in cls.grid_flags.items():
            out[flag.replace("-", "_")] = GridFlag(name, key, f"{name}: {cls.hparam_help(key)}")
    return out


def method_help() -> str:
    """``--method`` help: every registered method with its default learning rate."""
    items = [f"{n} (default lr {METHODS.get(n).default_lr:g})" for n in METHODS.names()]
    return "tuning method: " + ", ".join(items)


def get_method(name: str, **hparams) -> TuningMethod:
    """Instantiate a registered method by name with keyword hyper-parameters."""
    return METHODS.get(name)(**hparams)


def trainable_state(model: nn.Module) -> dict:
    """The tensors a variant file stores: every parameter with ``requires_grad``."""
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

"""Tuning methods (one registry): finetune, prompt (OFA-PT), adapter, bitfit / bitfit-ofa, lora.

A new method is one module here with a ``@METHODS.register(name)`` class (see ``base.TuningMethod``)
plus its import line below; the CLI, the fairseq loader, the zoo and the registry tests ask the class.
"""

from robustbench_ofa.tuning import adapter, bitfit, finetune, lora, prompt  # noqa: F401  (registration)
from robustbench_ofa.tuning.base import (
    METHODS,
    GridFlag,
    MethodConfig,
    TuningMethod,
    count_trainable,
    get_method,
    grid_flags,
    method_help,
    trainable_state,
)

__all__ = ["METHODS", "GridFlag", "MethodConfig", "TuningMethod", "count_trainable", "get_method", "grid_flags",
           "method_help", "trainable_state"]

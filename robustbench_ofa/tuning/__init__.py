"""Tuning methods (one registry): finetune, prompt (OFA-PT), adapter, bitfit / bitfit-ofa, lora."""

from robustbench_ofa.tuning import adapter, bitfit, finetune, lora, prompt  # noqa: F401  (registration)
from robustbench_ofa.tuning.base import METHODS, MethodConfig, TuningMethod, count_trainable, get_method

__all__ = ["METHODS", "MethodConfig", "TuningMethod", "count_trainable", "get_method"]

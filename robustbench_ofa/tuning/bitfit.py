"""BitFit: train biases only.

``bitfit`` trains every bias of the transformer and backbone. ``bitfit-ofa`` reproduces OFA's own
variant (``train.py``: names containing "layer_norm" or "fc" that are biases, judged on fairseq's
parameter names), i.e. LayerNorm and FFN biases only.
"""

from __future__ import annotations

from dataclasses import dataclass

from robustbench_ofa.models.fairseq import hf_to_fairseq_name
from robustbench_ofa.tuning.base import METHODS, MethodConfig, TuningMethod


@dataclass
class BitFitConfig(MethodConfig):
    pass


@METHODS.register("bitfit")
class BitFit(TuningMethod):
    config_cls = BitFitConfig
    default_lr = 5e-3

    def trainable(self, name, param) -> bool:
        return name.endswith(".bias")


@METHODS.register("bitfit-ofa")
class BitFitOFA(TuningMethod):
    """OFA's BitFit: LayerNorm and FFN (fc1/fc2) biases only."""

    config_cls = BitFitConfig
    default_lr = 5e-3

    def trainable(self, name, param) -> bool:
        fs = hf_to_fairseq_name(name)
        return "bias" in fs and ("layer_norm" in fs or "fc" in fs)

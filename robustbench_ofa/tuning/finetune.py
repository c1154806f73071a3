"""Full finetuning: every weight trains (the baseline OFA-PT compares against)."""

from __future__ import annotations

from dataclasses import dataclass, field

from robustbench_ofa.tuning.base import METHODS, MethodConfig, TuningMethod


@dataclass
class FinetuneConfig(MethodConfig):
    #: Keep the ResNet's BatchNorm statistics fixed (small CPU batches make running stats noisy).
    freeze_batchnorm: bool = field(default=True, metadata={"help": "keep BatchNorm statistics fixed (on/off)"})


@METHODS.register("finetune")
class Finetune(TuningMethod):
    config_cls = FinetuneConfig
    default_lr = 5e-4
    parameter_efficient = False

    def trainable(self, name, param) -> bool:
        return True

    def apply(self, model):
        super().apply(model)
        model.freeze_batchnorm = self.config.freeze_batchnorm
        model.train(model.training)
        return model

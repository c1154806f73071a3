"""Targeted APGD-DLR over the top classes (Croce & Hein 2020): torchattacks' ``APGDT``.

Its targeted DLR loss divides by ``z_(1) - (z_(3) + z_(4)) / 2`` of the sorted logits, so it needs at least
4 classes: a 3-answer task (VE) is refused before any work instead of crashing inside torchattacks.
"""

from attacks.image.common import stock_runner
from attacks.registry import AttackSpec, register
from attacks.threat import Threat


def _build(view, eps, params, seed):
    import torchattacks

    return torchattacks.APGDT(view, norm="Linf", eps=eps, steps=params.steps, n_restarts=params.restarts,
                              seed=seed, n_classes=view.num_classes)


register(AttackSpec("apgd-t", "APGD-T", Threat.LINF, "white-box", "targeted APGD-DLR over the top classes",
                    min_classes=4, runner=stock_runner(_build)))

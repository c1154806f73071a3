"""APGD (Croce & Hein 2020) with the cross-entropy or the DLR loss: torchattacks' ``APGD``."""

from attacks.image.common import stock_runner
from attacks.registry import AttackSpec, register
from attacks.threat import Threat


def _apgd(loss: str):
    def build(view, eps, params, seed):
        import torchattacks

        return torchattacks.APGD(view, norm="Linf", eps=eps, steps=params.steps, n_restarts=params.restarts,
                                 seed=seed, loss=loss)

    return build


register(AttackSpec("apgd-ce", "APGD-CE", Threat.LINF, "white-box", "APGD with cross-entropy (Croce & Hein)",
                    runner=stock_runner(_apgd("ce"))))
register(AttackSpec("apgd-dlr", "APGD-DLR", Threat.LINF, "white-box", "APGD with the DLR loss", min_classes=3,
                    runner=stock_runner(_apgd("dlr"))))

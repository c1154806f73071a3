"""AutoAttack, standard version (APGD-CE, APGD-T, FAB-T, Square): torchattacks' ``AutoAttack``.

Its APGD-T stage uses the targeted DLR loss, which needs at least 4 classes (see ``attacks.image.apgdt``).
Run one sample at a time (``common.per_sample_stock_runner``): its FAB-T stage queries images far outside
the eps ball, which a batched view cannot assign to their samples.
"""

from attacks.image.common import per_sample_stock_runner
from attacks.registry import AttackSpec, register
from attacks.threat import Threat


def _build(view, eps, params, seed):
    import torchattacks

    return torchattacks.AutoAttack(view, norm="Linf", eps=eps, version="standard", n_classes=view.num_classes,
                                   seed=seed)


register(AttackSpec("autoattack", "AutoAttack", Threat.LINF, "white-box",
                    "AutoAttack standard (APGD-CE, APGD-T, FAB-T, Square)", min_classes=4, closed_only=True,
                    runner=per_sample_stock_runner(_build)))

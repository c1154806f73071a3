"""FGSM (Goodfellow et al. 2015): one signed-gradient step of size eps, torchattacks' ``FGSM``."""

from attacks.image.common import engine_runner
from attacks.registry import AttackSpec, register
from attacks.threat import Threat

register(AttackSpec("fgsm", "FGSM", Threat.LINF, "white-box", "FGSM (Goodfellow et al.), one signed-gradient step",
                    runner=engine_runner(Threat.LINF, single_step=True)))

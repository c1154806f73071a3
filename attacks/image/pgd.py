"""PGD L-inf (Madry et al. 2018), torchattacks' ``PGD`` update on the early-stopping engine."""

from attacks.image.common import engine_runner
from attacks.registry import AttackSpec, register
from attacks.threat import Threat

register(AttackSpec("pgd", "PGD", Threat.LINF, "white-box", "PGD L-inf (Madry et al.), early stopping",
                    runner=engine_runner(Threat.LINF)))

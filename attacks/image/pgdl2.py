"""PGD L2 (Madry et al. 2018), torchattacks' ``PGDL2`` update on the early-stopping engine."""

from attacks.image.common import engine_runner
from attacks.registry import AttackSpec, register
from attacks.threat import Threat

register(AttackSpec("pgdl2", "PGD-L2", Threat.L2, "white-box", "PGD L2 (Madry et al.), early stopping",
                    runner=engine_runner(Threat.L2)))

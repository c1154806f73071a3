"""Square attack (Andriushchenko et al. 2020), score-based black-box: torchattacks' ``Square``."""

from dataclasses import dataclass

from attacks.image.common import stock_runner
from attacks.registry import AttackSpec, register
from attacks.threat import Threat
from robustbench_ofa.configcli import opt, positive


@dataclass(frozen=True)
class SquareOptions:
    queries: int = opt(500, flag="--queries", help="query budget of the Square attack", check=positive)


def _build(view, eps, params, seed):
    import torchattacks

    return torchattacks.Square(view, norm="Linf", eps=eps, n_queries=params.opt(SquareOptions).queries,
                               n_restarts=params.restarts, seed=seed)


register(AttackSpec("square", "Square", Threat.LINF, "black-box", "Square attack, score-based black-box",
                    options=SquareOptions, runner=stock_runner(_build)))

"""Carlini-Wagner L2 (2017): torchattacks' ``CW``. Unbounded: success is counted within the L2 eps."""

from dataclasses import dataclass

from attacks.image.common import stock_runner
from attacks.registry import AttackSpec, register
from attacks.threat import Threat
from robustbench_ofa.configcli import non_negative, opt, positive


@dataclass(frozen=True)
class CWOptions:
    c: float = opt(1.0, flag="--cw-c", key="cw_c", help="C&W: weight of the misclassification term",
                   check=non_negative)
    steps: int = opt(50, flag="--cw-steps", key="cw_steps", help="C&W: optimisation steps", check=positive)
    lr: float = opt(0.01, flag="--cw-lr", key="cw_lr", help="C&W: Adam learning rate", check=non_negative)


def _build(view, eps, params, seed):
    import torchattacks

    o = params.opt(CWOptions)
    return torchattacks.CW(view, c=o.c, steps=o.steps, lr=o.lr)


register(AttackSpec("cw", "C&W", Threat.L2, "white-box", "Carlini-Wagner L2; success counted within the L2 eps",
                    bounded=False, options=CWOptions, runner=stock_runner(_build)))

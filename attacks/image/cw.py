"""Carlini-Wagner L2 (2017): torchattacks' ``CW``. Unbounded: success is counted within the L2 eps.

torchattacks' margin ``f`` picks the true logit and the best other one by multiplying the logits with a
one-hot mask and taking the row maximum; the masked-out entries become 0, which is the maximum whenever
the logits are negative. Every OFA logit an attack sees is a log-likelihood (<= 0; sequence tasks'
``[-NLL, 0]``), so stock C&W's margin was identically 0, its gradient carried only the distance term and
it returned the clean images: it fooled nothing (tests/test_attacks.py, every registered image attack
fools something). ``_margin`` is the same margin with the masked entries at -inf (identical to stock C&W
for positive logits).
"""

from dataclasses import dataclass

import torch

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


def _margin(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """C&W's ``f``: true logit minus the best other one (reversed when targeted), floored at -kappa;
    correct for logits of any sign."""
    true = outputs.gather(1, labels[:, None])[:, 0]
    mask = torch.nn.functional.one_hot(labels, outputs.shape[1]).bool()
    other = outputs.masked_fill(mask, float("-inf")).max(dim=1).values
    return torch.clamp(other - true if self.targeted else true - other, min=-self.kappa)


def _build(view, eps, params, seed):
    import torchattacks

    o = params.opt(CWOptions)
    attack = torchattacks.CW(view, c=o.c, steps=o.steps, lr=o.lr)
    attack.f = _margin.__get__(attack)  # this instance only: torchattacks' class stays as shipped
    # C&W queries every row of the batch, in order, at every step, and without a budget its images can
    # wander further from their clean image than from another sample's: rows are known, not matched.
    view.index = torch.arange(len(view.clean), device=view.clean.device)
    return attack


register(AttackSpec("cw", "C&W", Threat.L2, "white-box", "Carlini-Wagner L2; success counted within the L2 eps",
                    bounded=False, options=CWOptions, runner=stock_runner(_build)))

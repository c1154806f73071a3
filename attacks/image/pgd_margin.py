"""PGD on the C&W margin loss (Carlini & Wagner 2017; the "non-saturating loss" item of Carlini et al.'s
adaptive-attack checklist), on the early-stopping engine.

The loss ``max_{j != y} z_j - z_y`` of the task view's logits keeps a useful gradient where a confident
softmax makes the cross-entropy's underflow to exactly 0 (a form of gradient masking). On sequence tasks
(grounding, captioning: logits ``[-NLL, 0]``) the margin is the reference output's NLL itself.
Budget: the shared ``--steps``, ``--alpha``, ``--restarts``.
"""

from attacks.image.restarts import pgd_restarts
from attacks.objective import Objective
from attacks.registry import AttackSpec, register
from attacks.threat import Threat


def _runner(spec, view, images, eps, params, seeds):
    return pgd_restarts(view, Objective(view, loss="margin"), images, eps, params, seeds)


register(AttackSpec("pgd-margin", "PGD-margin", Threat.LINF, "white-box",
                    "PGD L-inf on the C&W margin loss (does not saturate), early stopping", runner=_runner))

"""Twin transfer: PGD images crafted on the attacked variant's twins, judged on the variant itself.

Why: a variant whose own gradients are obfuscated (a prompt that saturates the softmax, a robust-trained
model that only *looks* robust) can still be fooled by images crafted on a model trained like it but
without the obfuscation (ADAPT, 2024; Athalye et al. 2018's transfer check). The sources are the
variant's *twins* in the same run, chosen by the evaluator from the cards: a robust-trained variant's
standard twin (same base, method and hyper-parameters, no adversarial training), and a
parameter-efficient variant's fully finetuned twin (same base, not robust-trained). Under ``--protocol
strong`` the attack joins the L-inf cascade last, so the per-sample worst case includes it.

Each source runs PGD with the run's ``--steps``/``--alpha``, a random start and no early stopping (the
source cannot tell when the target is fooled); per sample the first source image that fools the target
is kept. Gradient evaluations on the sources are counted as the attack's cost; the first-step gradient is
the source's, so it is not reported (NaN) for the masking check on the target.
"""

from __future__ import annotations

import torch

from attacks.engines import EngineResult, run_pgd
from attacks.image.common import default_alpha, keep_fooled
from attacks.objective import Objective
from attacks.registry import AttackSpec, register
from attacks.threat import Threat
from robustbench_ofa.errors import RobustOFAError

NAME = "twin-transfer"
#: per-source offset of the random-start seeds, so two sources never share a start
_SOURCE_STRIDE = 104729


def _runner(spec, view, images, eps, params, seeds):
    sources = list(getattr(view, "sources", None) or ())
    if not sources:
        raise RobustOFAError(f"attack {NAME!r} crafts its images on the attacked variant's twins: it runs in "
                             "robust-ofa evaluate, on variants whose standard or finetuned twin is in the run")
    best = None
    for i, src in enumerate(sources):
        src.set_budget(Threat.LINF, eps)
        res = run_pgd(Objective(src), images, eps, default_alpha(params, eps), params.steps, Threat.LINF,
                      params.random_start, early_stop=False, seeds=[s + _SOURCE_STRIDE * i for s in seeds])
        view.counters.grad += src.counters.grad
        best = res if best is None else keep_fooled(view, best, res)
    n = len(images)
    return EngineResult(best.adv, torch.zeros(n, dtype=torch.bool, device=images.device),
                        torch.full((n,), float("nan")))


register(AttackSpec(NAME, "Twin transfer", Threat.LINF, "black-box",
                    "PGD L-inf crafted on the variant's standard and finetuned twins (same base), judged on the "
                    "variant; --protocol strong adds it last to the L-inf cascade", runner=_runner,
                    needs_sources=True))

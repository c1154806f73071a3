"""Targeted PGD over the wrong answers (the multi-targeted attack of Gowal et al. 2019, as in APGD-T),
for small answer sets, on the early-stopping engine.

Each of the ``min(C - 1, MAX_TARGETS)`` most likely wrong classes at the clean image is the target in
turn (cross-entropy towards it, minimised); a sample leaves once fooled (any wrong answer counts) and only
the samples still robust are attacked with the next target. It needs 2 classes, not the 4 of
torchattacks' targeted DLR loss, so it runs on VE's 3 answers; on sequence tasks (logits ``[-NLL, 0]``)
its one target is class 1, a monotone transform of maximising the NLL. Budget per target: the shared
``--steps``, ``--alpha``, ``--restarts``.
"""

from __future__ import annotations

import torch

from attacks.engines import EngineResult
from attacks.image.restarts import pgd_restarts
from attacks.objective import Objective
from attacks.registry import AttackSpec, register
from attacks.threat import Threat

#: at most this many target classes per sample (APGD-T's default number of target classes)
MAX_TARGETS = 9


def _runner(spec, view, images, eps, params, seeds):
    n = len(images)
    labels = view.labels()
    rows = torch.arange(n, device=images.device)
    with torch.no_grad():  # the targets: wrong classes by their clean logits, most likely first
        view.counters.add(rows, False)
        logits, _ = view.task.attack_logits(view.model, view.input_ids, images, view.targets)
        order = logits.detach().scatter(1, labels[:, None], float("-inf")).argsort(1, descending=True)
    adv = images.detach().clone()
    stopped = torch.zeros(n, dtype=torch.bool)
    first_grad = torch.full((n,), float("nan"))
    open_rows = rows
    for rank in range(min(view.num_classes - 1, MAX_TARGETS)):
        if len(open_rows) == 0:
            break
        objective = Objective(view, loss="targeted-ce", targets=order[:, rank])
        res = pgd_restarts(view, objective, images, eps, params, [s + 104729 * rank for s in seeds], rows=open_rows)
        if rank == 0:
            first_grad = res.first_grad
        stopped |= res.stopped.cpu()
        with torch.no_grad():
            preds = view.task.predict(view.model, view.batch, images=res.adv)
        adv[open_rows] = res.adv[open_rows]  # fooled rows keep this image; the others are overwritten later
        open_rows = torch.tensor([int(r) for r in open_rows if preds[int(r)].correct], dtype=torch.long,
                                 device=images.device)
    return EngineResult(adv.detach(), stopped, first_grad)


register(AttackSpec("pgd-targeted", "PGD-targeted", Threat.LINF, "white-box",
                    "targeted PGD L-inf, each wrong answer (up to 9) as the target in turn, early stopping",
                    runner=_runner))

"""PGD with restarts on the early-stopping engine for any objective (the adaptive attacks share it)."""

from __future__ import annotations

import torch

from attacks.engines import EngineResult, run_pgd
from attacks.image.common import default_alpha
from attacks.objective import Objective
from attacks.threat import Threat
from attacks.views import TaskView, judged


def pgd_restarts(view: TaskView, objective: Objective, images: torch.Tensor, eps: float, params, seeds: list[int],
                 rows: torch.Tensor | None = None, norm: Threat = Threat.LINF) -> EngineResult:
    """``params.restarts`` runs of PGD (``params.steps``, step size, random start, early stopping) on
    ``objective``, over ``rows`` (default all); each restart attacks only the rows no earlier restart
    fooled (judged by the task's prediction), and a fooled row keeps the image that fooled it. A row whose
    gradient is exactly 0 stops where it is (``run_pgd(stop_stuck=True)``): masked rows cost one step."""
    n = len(images)
    open_rows = torch.arange(n, device=images.device) if rows is None else rows.to(images.device)
    adv = images.detach().clone()
    stopped = torch.zeros(n, dtype=torch.bool)
    first_grad = torch.full((n,), float("nan"))
    restarts = max(1, params.restarts)
    for restart in range(restarts):
        res = run_pgd(objective, images, eps, default_alpha(params, eps), params.steps, norm, params.random_start,
                      params.early_stop, [s + 7919 * restart for s in seeds], rows=open_rows, stop_stuck=True)
        if restart == 0:
            first_grad = res.first_grad
        stopped |= res.stopped.cpu()
        adv[open_rows] = res.adv[open_rows]
        if restart == restarts - 1:
            break
        with torch.no_grad(), judged():
            preds = view.task.predict(view.model, view.batch, images=adv)
        open_rows = torch.tensor([int(r) for r in open_rows if preds[int(r)].correct], dtype=torch.long,
                                 device=images.device)
        if len(open_rows) == 0:
            break
    return EngineResult(adv.detach(), stopped, first_grad)

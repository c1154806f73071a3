"""Runners shared by the image attacks: the project's early-stopping engine and torchattacks' classes."""

from __future__ import annotations

from collections.abc import Callable

import torch

from attacks.engines import EngineResult, run_pgd
from attacks.objective import Objective
from attacks.threat import Threat
from attacks.views import TaskView, judged


def default_alpha(params, eps: float) -> float:
    """Madry et al.'s rule, 2.5 * eps / steps, unless a step size is given."""
    return params.alpha if params.alpha is not None else 2.5 * eps / params.steps


def engine_runner(threat: Threat, single_step: bool = False):
    """PGD on the early-stopping engine (restarts keep, per sample, an image that fools); FGSM is one
    step of size eps without a random start."""

    def runner(spec, view, images, eps, params, seeds):
        objective = Objective(view)
        if single_step:
            return run_pgd(objective, images, eps, eps, 1, threat, random_start=False,
                           early_stop=False, seeds=seeds)
        best = None
        for restart in range(max(1, params.restarts)):
            res = run_pgd(objective, images, eps, default_alpha(params, eps), params.steps, threat,
                          params.random_start, params.early_stop, [s + 7919 * restart for s in seeds])
            best = res if best is None else keep_fooled(view, best, res)
        return best

    return runner


def per_sample_stock_runner(build: Callable):
    """A torchattacks class run on one sample at a time, each seeded by its own seed.

    For attacks whose queries leave the budget: AutoAttack's FAB-T searches for the nearest decision
    boundary and projects onto the eps ball only at the end, so it queries images far from every clean
    image (L-inf ~0.8 measured), and ``TaskView.match`` cannot tell which sample of a batch such an image
    belongs to (it refused: "cannot tell two samples of a batch apart"). With one row per call every query
    is that row's (``TaskView.row``). A sample's result does not depend on the batch it came in. The price is
    batching: the attack runs len(images) times on batches of 1.
    """

    def runner(spec, view, images, eps, params, seeds):
        labels = view.labels()
        adv = images.detach().clone()
        for i in range(len(images)):
            seed = int(seeds[i]) if seeds and i < len(seeds) else i
            torch.manual_seed(seed)
            attack = build(view, eps, params, seed)
            view.row = i
            try:
                adv[i:i + 1] = attack(images[i:i + 1], labels[i:i + 1]).detach()
            finally:
                view.row = None
        return stock_result(adv)

    return runner


def keep_fooled(view: TaskView, a: EngineResult, b: EngineResult) -> EngineResult:
    """Across restarts keep, per sample, an image that fools the model if either restart found one."""
    with torch.no_grad(), judged():
        preds = view.task.predict(view.model, view.batch, images=a.adv)
    fooled = torch.tensor([not p.correct for p in preds], device=a.adv.device)
    adv = torch.where(fooled[:, None, None, None], a.adv, b.adv)
    return EngineResult(adv, a.stopped | b.stopped, a.first_grad)


def stock_result(adv: torch.Tensor) -> EngineResult:
    """A torchattacks class's images as an engine result: it reports no early stops and no first gradient."""
    n = len(adv)
    return EngineResult(adv.detach(), torch.zeros(n, dtype=torch.bool), torch.full((n,), float("nan")))


def stock_runner(build: Callable):
    """A torchattacks class built by ``build(view, eps, params, seed)``, seeded by the batch's first seed."""

    def runner(spec, view, images, eps, params, seeds):
        torch.manual_seed(int(seeds[0]) if seeds else 0)
        attack = build(view, eps, params, int(seeds[0]) if seeds else 0)
        return stock_result(attack(images, view.labels()))

    return runner

"""FGSM, PGD (L-inf) and PGD-L2 with early stopping, step for step as torchattacks defines them.

The update rules are torchattacks 3.5.1's (``FGSM``, ``PGD``, ``PGDL2``): mean cross-entropy over the
batch, ``x + alpha * sign(grad)`` projected to the eps-ball and [0, 1] (L-inf), or the per-sample
L2-normalised gradient step projected to the L2 ball. With ``early_stop`` off and no random start the
adversarial images are identical to torchattacks' (tested). With ``early_stop`` on, a sample found
fooled at step t keeps that image and leaves the batch, so it costs no further gradient evaluations.

Random starts are drawn per sample from a generator seeded by the sample's own seed, so a sample's
result does not depend on which other samples share its batch (resume-safe).

The adaptive attacks (``pgd-margin``, ``pgd-targeted``, ``eot-pgd``) run this same engine on another
objective (margin loss, targeted cross-entropy, EOT-averaged gradients: ``attacks.objective``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attacks.objective import Objective
from attacks.threat import Threat


@dataclass
class EngineResult:
    adv: torch.Tensor
    #: rows found fooled inside the loop (early stopping); the final judgement is the task's.
    stopped: torch.Tensor
    #: mean |d loss / d x| of each row at its first step (gradient-masking check).
    first_grad: torch.Tensor


def _random_start(images: torch.Tensor, eps: float, norm: str, seeds: list[int]) -> torch.Tensor:
    out = images.clone()
    for i, seed in enumerate(seeds):
        g = torch.Generator().manual_seed(int(seed))
        if norm == Threat.LINF:
            noise = torch.rand(images[i].shape, generator=g) * (2 * eps) - eps
            out[i] = torch.clamp(images[i] + noise.to(images.device), 0, 1)
        else:
            delta = torch.randn(images[i].shape, generator=g)
            r = torch.rand(1, generator=g)
            delta = delta * (r / delta.norm(p=2) * eps)
            out[i] = torch.clamp(images[i] + delta.to(images.device), 0, 1)
    return out


def _read_flags(*asks: torch.Tensor | None) -> tuple[bool, ...]:
    """Each 0-d boolean tensor asked as a bool (False for None), in one host read for all of them."""
    present = [q for q in asks if q is not None]
    got = iter(torch.stack([q.to(present[0].device) for q in present]).tolist() if present else ())
    return tuple(q is not None and bool(next(got)) for q in asks)  # (a task may judge on the host)


def run_pgd(objective: Objective, images: torch.Tensor, eps: float, alpha: float, steps: int,
            norm: Threat = Threat.LINF, random_start: bool = True, early_stop: bool = True,
            seeds: list[int] | None = None, eps_for_division: float = 1e-10,
            rows: torch.Tensor | None = None, stop_stuck: bool = False) -> EngineResult:
    """PGD (``Threat.LINF`` or ``Threat.L2``); FGSM is ``steps=1, alpha=eps, random_start=False``.

    ``rows``: attack only these rows of the batch (the others keep their input image); default all. The
    gradient comes from ``objective.grad_and_fooled`` (cross-entropy unless the objective says otherwise).
    ``stop_stuck``: a row whose gradient is exactly 0 everywhere (a masked gradient) stays where it is
    and leaves the batch: with a deterministic objective every further step would give the same image.
    """
    n = len(images)
    device = images.device
    x0 = images.detach()
    adv = _random_start(x0, eps, norm, seeds or list(range(n))) if random_start else x0.clone()
    if rows is None:
        active = torch.arange(n, device=device)
    else:
        active = rows.to(device=device, dtype=torch.long)
        keep = torch.ones(n, dtype=torch.bool, device=device)
        keep[active] = False
        adv[keep] = x0[keep]
    stopped = torch.zeros(n, dtype=torch.bool, device=device)
    first_grad = torch.full((n,), float("nan"))
    check = early_stop and objective.checks_in_loop
    stuck_stop = stop_stuck and not getattr(objective, "stochastic", None)
    for step in range(steps):
        if len(active) == 0:
            break
        x = adv.index_select(0, active).clone().requires_grad_(True)
        grad, fooled = objective.grad_and_fooled(x, active, need_fooled=check)
        if step == 0:
            first_grad[active.cpu()] = grad.detach().abs().flatten(1).mean(1).cpu() * len(active)
        # Both questions the host must ask (any row fooled? any row stuck?) in one read-back: on an
        # accelerator each read is a sync, and this is the loop's only one.
        moving = grad.flatten(1).abs().amax(1) > 0 if stuck_stop else None
        any_fooled, any_stuck = _read_flags(None if fooled is None else fooled.any(),
                                            None if moving is None else ~moving.all())
        if any_fooled:
            fooled = objective.confirm(x.detach(), active, fooled)
            stopped[active[fooled]] = True
            keep = ~fooled
            active, x, grad = active[keep], x[keep], grad[keep]
            moving = None if moving is None else moving[keep]
            if len(active) == 0:
                break
        if any_stuck:  # (if only fooled rows were stuck, ``moving`` is all True now: the same rows stay)
            active, x, grad = active[moving], x[moving], grad[moving]
            if len(active) == 0:
                break
        base = x0.index_select(0, active)
        if norm == Threat.LINF:
            new = x.detach() + alpha * grad.sign()
            delta = torch.clamp(new - base, min=-eps, max=eps)
        else:
            b = len(active)
            gnorm = torch.norm(grad.view(b, -1), p=2, dim=1) + eps_for_division
            new = x.detach() + alpha * (grad / gnorm.view(b, 1, 1, 1))
            delta = new - base
            dnorm = torch.norm(delta.view(b, -1), p=2, dim=1)
            factor = torch.min(eps / dnorm, torch.ones_like(dnorm))
            delta = delta * factor.view(-1, 1, 1, 1)
        adv[active] = torch.clamp(base + delta, min=0, max=1).detach()
    return EngineResult(adv.detach(), stopped, first_grad)

"""EOT-PGD (Athalye et al. 2018): PGD whose gradient is the average over ``EOT_SAMPLES`` stochastic forward
passes through the tuning method's own dropout (prompt, adapter, LoRA dropout; ``attacks.objective.
stochastic_modules``), in train mode for those passes only; BatchNorm and every other module stay in
eval mode, the in-loop and final judgements are made in eval mode (as the model is deployed), and all
modes are restored after. Dropout masks come from the global RNG, seeded from the batch's first seed
inside a forked RNG state (the run's other random draws are untouched).

A variant without such modules (full finetuning, BitFit, adapters/LoRA with dropout 0) has nothing to
average over: EOT-PGD then is PGD (cross-entropy, same budget); the evaluator records how many
stochastic modules each variant has (check ``stochastic_modules``). Budget: the shared ``--steps``,
``--alpha``, ``--restarts``; each step costs ``EOT_SAMPLES`` gradient evaluations plus one query.
"""

from __future__ import annotations

import torch

from attacks.image.restarts import pgd_restarts
from attacks.objective import Objective, stochastic_modules
from attacks.registry import AttackSpec, register
from attacks.threat import Threat

#: stochastic forward passes averaged per gradient step
EOT_SAMPLES = 8


def _runner(spec, view, images, eps, params, seeds):
    modules = [m for _, m in stochastic_modules(view.model)]
    objective = Objective(view, stochastic=modules, eot_samples=EOT_SAMPLES)
    devices = [images.device.index or 0] if images.is_cuda else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seeds[0]) if seeds else 0)
        return pgd_restarts(view, objective, images, eps, params, seeds)


register(AttackSpec("eot-pgd", "EOT-PGD", Threat.LINF, "white-box",
                    f"PGD L-inf with gradients averaged over {EOT_SAMPLES} passes through the tuning method's "
                    "dropout (equals PGD without it)", runner=_runner))

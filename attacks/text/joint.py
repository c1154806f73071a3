"""Co-Attack (Zhang et al. 2022) on OFA: perturb the text first, then the image conditioned on that text.

Stage 1 runs a text recipe (default PWWS, 1 word) on each sample. Stage 2 runs PGD (L-inf, default
2/255, 10 steps, the project's early-stopping engine) on the image with the adversarial text in the
source, for the samples stage 1 did not already fool; the image loss is the task loss of the image
attacks (answer-set cross-entropy, or the reference sequence's NLL), which plays the role of Co-Attack's
embedding-divergence loss for a model whose output is a decoded sequence rather than an embedding. The
joint threat model is "<= words changed AND image within eps", so image-only attacks at eps' <= eps and
text-only attacks at words' <= words are contained in it (the evaluator folds them into its worst case).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from attacks.engines import EngineResult
from attacks.registry import AttackParams, run_attack
from attacks.text.budget import TextBudget
from attacks.text.engine import TextOutcome, run_text_attack
from attacks.text.queries import source_ids
from attacks.views import TaskView
from robustbench_ofa.tasks.base import Task, TaskBatch


@dataclass
class JointResult:
    texts: list[TextOutcome]
    adv_images: torch.Tensor
    #: source ids of the adversarial texts (what the model reads with ``adv_images``)
    input_ids: torch.Tensor
    grad_evals: torch.Tensor
    first_grad: torch.Tensor


def run_co_attack(model, task: Task, batch: TaskBatch, text_recipe: str, budget: TextBudget, eps: float,
                  params: AttackParams, seeds: Sequence[int], clean_scores: Sequence[float] | None = None,
                  caption_drop: float = 0.5) -> JointResult:
    samples = batch.samples
    texts = run_text_attack(text_recipe, model, task, samples, batch.images, budget, seeds, clean_scores,
                            caption_drop)
    ids = source_ids(task, samples, [t.adversarial for t in texts]).to(batch.images.device)
    adv = batch.images.clone()
    grad_evals = torch.zeros(len(samples), dtype=torch.long)
    first_grad = torch.full((len(samples),), float("nan"))
    rows = [i for i, t in enumerate(texts) if t.status != "successful"]
    if rows and eps > 0:
        idx = torch.tensor(rows, dtype=torch.long)
        sub = TaskBatch([samples[i] for i in rows], ids[idx], batch.images[idx], batch.targets[idx])
        view = TaskView(model, task, sub)
        res: EngineResult = run_attack("pgd", view, sub.images, eps, params, [int(seeds[i]) for i in rows])
        adv[idx] = res.adv
        grad_evals[idx] = view.counters.grad
        first_grad[idx] = res.first_grad
    return JointResult(texts, adv.detach(), ids, grad_evals, first_grad)

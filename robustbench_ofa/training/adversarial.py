"""Adversarial training: the inner maximisation and the outer loss of PGD-AT, TRADES and FGSM-RS.

Why the evaluation's engine: the training attack is ``attacks.engines.run_pgd`` on the evaluation's
``TaskView`` and ``Objective`` (cross-entropy of the task's attack logits; TRADES: the KL divergence from
the clean prediction on the same logits). So what a variant is trained against is what
``robust-ofa evaluate`` measures, step rule and projection included.

The inner attack runs with the model in eval mode and differentiates with respect to the image only
(``torch.autograd.grad``), so it never updates BatchNorm statistics, never leaves gradients on any
weight, and sees no dropout; the model's mode is restored before the outer step. Random starts are drawn
per sample from a seed of (run seed, step, sample uid): reproducible and independent of batch
composition, like the evaluation's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from attacks.engines import run_pgd
from attacks.objective import Objective
from attacks.threat import Threat
from attacks.views import TaskView
from robustbench_ofa.seeds import sample_seed
from robustbench_ofa.tasks import Task, TaskBatch
from robustbench_ofa.training.config import TrainConfig


class _TradesObjective(Objective):
    """TRADES' inner objective: KL(p(x) || p(x_adv)) on the task's attack logits (p(x) fixed)."""

    def __init__(self, view: TaskView, clean_logits: torch.Tensor):
        super().__init__(view)
        self.clean_log_probs = F.log_softmax(clean_logits.detach().float(), dim=1)

    def _value(self, logits: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return trades_kl(logits, self.clean_log_probs.index_select(0, rows))


def trades_kl(adv_logits: torch.Tensor, clean_log_probs: torch.Tensor) -> torch.Tensor:
    """KL(p_clean || p_adv) averaged over rows: TRADES' ``KLDivLoss(log p_adv, p_clean)``, batch mean."""
    return F.kl_div(F.log_softmax(adv_logits.float(), dim=1), clean_log_probs, reduction="batchmean",
                    log_target=True)


@dataclass
class AdversarialBatch:
    """The batch with its attacked rows' images (and, with ``adv_text``, texts) replaced, which rows, and
    what the attack cost: ``grad_evals`` forward+backward passes, ``text_queries`` forward-only ones."""

    batch: TaskBatch
    rows: torch.Tensor
    grad_evals: int
    texts: list[str] | None = None
    text_queries: int = 0


def attacked_count(n: int, ratio: float) -> int:
    """How many leading rows of a batch of ``n`` the training attack perturbs: ceil(ratio * n), at least one
    (a split step counts them over its whole global batch, so its micro-batches attack the same rows)."""
    return max(1, math.ceil(ratio * n)) if n else 0


def attacked_rows(n: int, ratio: float) -> torch.Tensor:
    """The first ``attacked_count`` rows (batches are shuffled by the data plan, so this is a random share)."""
    return torch.arange(attacked_count(n, ratio))


def sample_seeds(config: TrainConfig, step: int, batch: TaskBatch, rows: torch.Tensor) -> list[int]:
    return [sample_seed(config.seed, "adv-train", step, batch.samples[int(r)].uid) for r in rows]


def adversarial_batch(model: nn.Module, task: Task, batch: TaskBatch, config: TrainConfig,
                      step: int, rows: torch.Tensor | None = None) -> AdversarialBatch:
    """Attack ``rows`` of ``batch`` (default: ``config.adv_ratio`` of it; a micro-batch gets the rows its
    global batch's share falls on) in eval mode, image gradients only; the model's mode is restored
    after. ``grad_evals``: the attack's forward+backward passes, counted per sample."""
    rows = (attacked_rows(len(batch), config.adv_ratio) if rows is None else rows).to(batch.images.device)
    if not len(rows):
        return AdversarialBatch(batch, rows, grad_evals=0)
    was_training = model.training
    model.eval()
    texts, queries = None, 0
    clean_ids = batch.input_ids  # TRADES' reference: the clean text and image, as in ``trades_term``
    try:
        if config.adv_text:  # text first (typos that keep the answer), then the image attack on that text
            from attacks.text.queries import source_ids
            from robustbench_ofa.training.adv_text import adversarial_texts

            texts, queries = adversarial_texts(model, task, batch, rows, config.adv_text, config.seed, step)
            batch = TaskBatch(batch.samples, source_ids(task, batch.samples, texts).to(batch.images.device),
                              batch.images, batch.targets)
        sub = TaskBatch([batch.samples[int(r)] for r in rows], batch.input_ids.index_select(0, rows),
                        batch.images.index_select(0, rows), batch.targets.index_select(0, rows))
        view = TaskView(model, task, sub)
        view.index = torch.arange(len(sub), device=sub.images.device)
        if config.adv == "trades":
            with torch.no_grad():
                clean_logits, _ = task.attack_logits(model, clean_ids.index_select(0, rows), sub.images,
                                                     sub.targets)
            objective: Objective = _TradesObjective(view, clean_logits)
        else:
            objective = Objective(view)
        steps = 1 if config.adv == "fgsm-rs" else config.adv_steps
        # Every method starts uniformly in the ball (the engine's rule, drawn per sample); TRADES' paper
        # starts at x + 0.001 N(0, 1) instead.
        res = run_pgd(objective, sub.images, config.adv_eps, config.adv_step_size, steps, Threat.LINF,
                      random_start=True, early_stop=False, seeds=sample_seeds(config, step, batch, rows))
    finally:
        model.train(was_training)
    images = batch.images.clone()
    images[rows] = res.adv
    out = TaskBatch(batch.samples, batch.input_ids, images.detach(), batch.targets)
    return AdversarialBatch(out, rows, grad_evals=steps * len(rows), texts=texts, text_queries=queries)


def trades_term(model: nn.Module, task: Task, adv: AdversarialBatch, clean: TaskBatch) -> torch.Tensor:
    """TRADES' outer robustness term: KL between the model's clean and adversarial predictions on the
    attacked rows, both differentiated with respect to the trainable weights (train mode)."""
    rows = adv.rows
    targets = clean.targets.index_select(0, rows)
    clean_logits, _ = task.attack_logits(model, clean.input_ids.index_select(0, rows),
                                         clean.images.index_select(0, rows), targets)
    adv_logits, _ = task.attack_logits(model, adv.batch.input_ids.index_select(0, rows),
                                       adv.batch.images.index_select(0, rows), targets)
    return trades_kl(adv_logits, F.log_softmax(clean_logits.float(), dim=1))

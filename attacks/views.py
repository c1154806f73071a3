"""What torchattacks sees: an OFA variant on one task as an ``(N, C)``-logit classifier of [0, 1] images.

Closed-answer tasks (VE, VQA) expose their answer-set scores (sequence log-likelihoods of each
candidate). Sequence tasks (grounding, captioning) expose two "classes" with logits ``[-NLL, 0]``, where
NLL is the summed negative log-likelihood of the reference output (the clean target or the model's clean
prediction). Cross-entropy on label 0 is then ``softplus(NLL)``, a strictly increasing function of the
NLL, so maximising it is maximising the sequence loss, and sign- or norm-based steps (FGSM, PGD, PGD-L2)
move exactly as they would on the NLL itself.

Stock attacks such as APGD and Square attack sub-batches they choose themselves, so a view does not
receive its samples in a fixed order. Each call is matched back to its samples by the nearest clean
image (every adversarial image lies within the attack's budget of its own clean image, and distinct
clean images are much further apart); an ambiguous match raises instead of guessing.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from attacks.threat import Threat
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.tasks.base import Task, TaskBatch

#: How the evaluator judges a prediction while an attack runs in lower precision or compiled (fp32, eager):
#: a zero-argument context-manager factory set by ``judging_with``, else None (the attack's own arithmetic
#: is already the judge's). Why: an in-loop "fooled" seen in bf16 stopped a row at the decision boundary,
#: and the final fp32 judgement then called it robust (gate-finetune VQA PGD 8/255 on CPU bf16: 5 of 16
#: in-loop stops), so low precision made models look more robust.
_JUDGE: list = [None]


@contextlib.contextmanager
def judging_with(factory):
    """Inside the block, in-loop "fooled" decisions and restart bookkeeping are confirmed under ``factory()``."""
    saved, _JUDGE[0] = _JUDGE[0], factory
    try:
        yield
    finally:
        _JUDGE[0] = saved


def judged():
    """The judge's context (fp32, eager) if an attack runs in another arithmetic, else a no-op."""
    return _JUDGE[0]() if _JUDGE[0] is not None else contextlib.nullcontext()


def judge_differs() -> bool:
    """True when the attack's arithmetic is not the judge's (so in-loop decisions need confirming)."""
    return _JUDGE[0] is not None


class Counters:
    """Per-sample counts of gradient evaluations (forward+backward) and score queries (forward only)."""

    def __init__(self, n: int):
        self.grad = torch.zeros(n, dtype=torch.long)
        self.queries = torch.zeros(n, dtype=torch.long)

    def add(self, idx: torch.Tensor, with_grad: bool) -> None:
        target = self.grad if with_grad else self.queries
        target.index_add_(0, idx if idx.device.type == "cpu" else idx.cpu(), torch.ones(len(idx), dtype=torch.long))


class TaskView(nn.Module):
    """An OFA variant + task + batch texts as an image classifier for torchattacks."""

    def __init__(self, model, task: Task, batch: TaskBatch, seq_targets: torch.Tensor | None = None):
        super().__init__()
        self.model = model
        self.task = task
        self.batch = batch
        self.input_ids = batch.input_ids
        self.clean = batch.images.detach()
        self.targets = batch.targets if seq_targets is None else seq_targets
        self.counters = Counters(len(batch))
        self.index: torch.Tensor | None = None  # set by engines that know their rows; else matched
        #: set while an attack runs on one row at a time (``common.per_sample_stock_runner``): every image
        #: queried is that row's, wherever the attack moves it
        self.row: int | None = None
        # torchattacks restores ``model.train()`` after an attack when the wrapper was in training mode
        # (an nn.Module's default): mirror the model's mode so an eval model stays in eval.
        self.train(model.training)

    @property
    def num_classes(self) -> int:
        return self.task.num_classes

    def labels(self) -> torch.Tensor:
        """The label each row must keep: its answer index, or class 0 (the reference output)."""
        return self.task.attack_labels(self.batch.samples).to(self.clean.device)

    def set_budget(self, norm: str | None, eps: float | None) -> None:
        """The attack's threat model: every image it queries lies within ``eps`` of its clean image."""
        self.budget = (norm, eps)

    def match(self, images: torch.Tensor) -> torch.Tensor:
        """Row of the batch each image belongs to: the only clean image within the attack's budget, or
        (unbounded attacks, or several candidates) the nearest one when it is clearly the nearest."""
        if self.index is not None:
            return self.index
        if self.row is not None:
            return torch.full((len(images),), self.row, dtype=torch.long, device=images.device)
        if len(self.clean) == 1:
            return torch.zeros(len(images), dtype=torch.long, device=images.device)
        norm, eps = getattr(self, "budget", (None, None))
        p = 2.0 if norm == Threat.L2 else float("inf")
        dist = torch.cdist(images.detach().flatten(1).float(), self.clean.flatten(1).float(), p=p)
        two = dist.topk(2, dim=1, largest=False)
        best, second = two.values[:, 0], two.values[:, 1]
        unique_in_ball = (best <= eps + 1e-4) & (second > eps + 1e-4) if eps is not None else torch.zeros_like(best, dtype=torch.bool)
        clear = unique_in_ball | (best < 0.5 * second)
        if not bool(clear.all()):
            raise RobustOFAError("attack view: cannot tell two samples of a batch apart (duplicate images?)")
        return two.indices[:, 0]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        idx = self.match(images)
        self.counters.add(idx, torch.is_grad_enabled() and images.requires_grad)
        logits, _ = self.task.attack_logits(self.model, self.input_ids.index_select(0, idx), images,
                                            self.targets.index_select(0, idx))
        return logits

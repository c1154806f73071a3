"""The quantity an attack maximises on one batch, and the in-loop "already fooled?" check.

Both are defined on the same task view that torchattacks sees (``attacks.views.TaskView``): by default the
cross-entropy of its (N, C) logits on the row's label. For closed-answer tasks "fooled" is the argmax
leaving the true answer; for grounding it is the task's own decoding from the same encoder pass giving
IoU < 0.5, so the check costs a few decoder steps, not another encoder pass. Tasks without
``checks_in_loop`` (captioning) are judged only after the attack. Both live on the task
(``Task.attack_logits``), so this module knows no task by name.

Losses (the adaptive attacks of Carlini et al.'s checklist):

* ``ce`` (default): mean cross-entropy, exactly torchattacks' (the default path is bit-identical);
* ``margin``: the C&W margin ``max_{j != y} z_j - z_y``, which does not saturate where a confident
  softmax makes the cross-entropy gradient underflow to 0; on sequence tasks (logits ``[-NLL, 0]``) the
  margin is the NLL itself;
* ``targeted-ce``: minus the cross-entropy on a per-row target class (``targets``): maximised, it pulls
  the row towards that wrong answer.

EOT (expectation over transformation, Athalye et al.): with ``stochastic`` modules (dropout that the
tuning method added: prompt, adapter, LoRA dropout, see :func:`stochastic_modules`) the gradient is the
average over ``eot_samples`` forward passes with those modules in train mode (everything else, BatchNorm
included, stays in eval mode; modes are restored after), while the in-loop judgement stays in eval mode.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from attacks.views import TaskView, judge_differs, judged

LOSSES = ("ce", "margin", "targeted-ce")


def margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per row ``max_{j != y} z_j - z_y`` (positive once the row is misclassified)."""
    true = logits.gather(1, labels[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(labels, logits.shape[1]).bool(), float("-inf")).max(1).values
    return other - true


def stochastic_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Dropout modules (p > 0) added by a parameter-efficient tuning method (``model.tuning_method``):
    prompt, adapter and LoRA dropout. Found by structure, not by name: a dropout whose parent module's
    parameters are all trainable under the method (a prompt generator, an adapter) or that holds trainable
    parameters of its own (a LoRA-wrapped linear). Base-model dropout (frozen parents) and full finetuning
    (nothing added) give none."""
    method = getattr(model, "tuning_method", None)
    if method is None or not getattr(method, "parameter_efficient", False):
        return []
    out = []
    for pname, parent in model.named_modules():
        def trains(params, prefix=pname):
            return [method.trainable(f"{prefix}.{n}" if prefix else n, p) for n, p in params]

        direct = trains(parent.named_parameters(recurse=False))
        every = trains(parent.named_parameters())
        if not (any(direct) or (every and all(every))):
            continue
        for cname, child in parent.named_children():
            if isinstance(child, nn.modules.dropout._DropoutNd) and child.p > 0:
                out.append((f"{pname}.{cname}" if pname else cname, child))
    return out


@contextmanager
def train_mode(modules: Sequence[nn.Module]) -> Iterator[None]:
    """Only ``modules`` in train mode for the block; their previous modes restored after."""
    was = [m.training for m in modules]
    try:
        for m in modules:
            m.train(True)
        yield
    finally:
        for m, w in zip(modules, was):
            m.train(w)


@dataclass
class _Rows:
    """Some rows of a batch as the passes use them: ids and targets on the device, the samples (read only
    by tasks that judge generated outputs), and the row indices on the host (the query counters)."""

    ids: torch.Tensor
    targets: torch.Tensor
    samples: list | None
    host: torch.Tensor


class Objective:
    """Loss and fooled-check for a subset ``rows`` of a view's batch."""

    def __init__(self, view: TaskView, loss: str = "ce", targets: torch.Tensor | None = None,
                 stochastic: Sequence[nn.Module] = (), eot_samples: int = 1):
        if loss not in LOSSES:
            raise ValueError(f"objective: loss {loss!r} is not one of {', '.join(LOSSES)}")
        if (loss == "targeted-ce") != (targets is not None):
            raise ValueError("objective: 'targeted-ce' needs per-row targets, and only it takes them")
        self.view = view
        self.labels = view.labels()
        self.checks_in_loop = view.task.checks_in_loop
        self.loss = loss
        self.targets = None if targets is None else targets.to(self.labels.device)
        self.stochastic = list(stochastic)
        self.eot_samples = max(1, int(eot_samples)) if self.stochastic else 1
        self._rows_cache: tuple | None = None

    def _value(self, logits: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        if self.loss == "ce":
            return F.cross_entropy(logits, labels)
        if self.loss == "margin":
            return margin(logits, labels).mean()
        return -F.cross_entropy(logits, self.targets.index_select(0, rows))

    def _rows(self, rows: torch.Tensor, need_samples: bool = False) -> _Rows:
        """What the passes need of ``rows``: the same objects while ``rows`` is the same tensor (an engine
        keeps its ``active`` rows until one stops). Why: on an accelerator the model range-checks ids once
        per tensor, and listing the rows' samples or counting their queries reads ``rows`` back: host syncs,
        which a fresh ``index_select``, ``tolist`` and ``cpu`` at every step made at every step."""
        hit = self._rows_cache
        if hit is None or hit[0] is not rows or hit[1] != rows._version:
            view = self.view
            hit = (rows, rows._version, _Rows(view.input_ids.index_select(0, rows),
                                              view.targets.index_select(0, rows), None, rows.cpu()))
            self._rows_cache = hit
        if need_samples and hit[2].samples is None:
            hit[2].samples = [self.view.batch.samples[r] for r in hit[2].host.tolist()]
        return hit[2]

    def loss_and_fooled(self, images: torch.Tensor, rows: torch.Tensor,
                        need_fooled: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mean loss over ``rows`` (cross-entropy as torchattacks computes it by default) and which rows are
        fooled now."""
        view = self.view
        r = self._rows(rows, need_fooled)
        view.counters.add(r.host, True)
        labels = self.labels.index_select(0, rows)
        logits, fooled = view.task.attack_logits(view.model, r.ids, images, r.targets, r.samples, labels,
                                                 need_fooled)
        return self._value(logits, labels, rows), fooled

    def grad_and_fooled(self, images: torch.Tensor, rows: torch.Tensor,
                        need_fooled: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """d loss / d images (``images`` requires grad) and which rows are fooled now (eval mode)."""
        if not self.stochastic:
            loss, fooled = self.loss_and_fooled(images, rows, need_fooled)
            return torch.autograd.grad(loss, images)[0], fooled
        fooled = self._fooled(images, rows) if need_fooled else None
        grad = torch.zeros_like(images)
        with train_mode(self.stochastic):
            for _ in range(self.eot_samples):
                loss, _ = self.loss_and_fooled(images, rows, False)
                grad += torch.autograd.grad(loss, images)[0]
        return grad / self.eot_samples, fooled

    def confirm(self, images: torch.Tensor, rows: torch.Tensor, fooled: torch.Tensor) -> torch.Tensor:
        """``fooled`` (some row flagged) with every row it flags judged again in the judge's arithmetic (fp32,
        eager) when the attack runs in another: a row stops only if the final judgement will call it fooled too."""
        if not judge_differs():
            return fooled
        idx = fooled.nonzero().flatten()
        with judged():
            again = self._fooled(images.index_select(0, idx), rows.index_select(0, idx))
        out = fooled.clone()
        out[idx] = again.to(out.device)
        return out

    @torch.no_grad()
    def _fooled(self, images: torch.Tensor, rows: torch.Tensor) -> torch.Tensor | None:
        """The in-loop judgement in eval mode (one forward pass, counted as a query)."""
        view = self.view
        r = self._rows(rows, True)
        view.counters.add(r.host, False)
        labels = self.labels.index_select(0, rows)
        _, fooled = view.task.attack_logits(view.model, r.ids, images.detach(), r.targets, r.samples, labels, True)
        return fooled

"""The quantity an attack maximises on one batch, and the in-loop "already fooled?" check.

Both are defined on the same task view that torchattacks sees (``attacks.views.TaskView``): the
cross-entropy of its (N, C) logits on the row's label. For closed-answer tasks "fooled" is the argmax
leaving the true answer; for grounding it is the task's own decoding from the same encoder pass giving
IoU < 0.5, so the check costs a few decoder steps, not another encoder pass. Tasks without
``checks_in_loop`` (captioning) are judged only after the attack. Both live on the task
(``Task.attack_logits``), so this module knows no task by name.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attacks.views import TaskView


class Objective:
    """Loss and fooled-check for a subset ``rows`` of a view's batch."""

    def __init__(self, view: TaskView):
        self.view = view
        self.labels = view.labels()
        self.checks_in_loop = view.task.checks_in_loop

    def loss_and_fooled(self, images: torch.Tensor, rows: torch.Tensor,
                        need_fooled: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mean cross-entropy over ``rows`` (as torchattacks computes it) and which rows are fooled now."""
        view = self.view
        view.counters.add(rows, True)
        labels = self.labels.index_select(0, rows)
        samples = [view.batch.samples[int(r)] for r in rows] if need_fooled else None
        logits, fooled = view.task.attack_logits(view.model, view.input_ids.index_select(0, rows), images,
                                                 view.targets.index_select(0, rows), samples, labels, need_fooled)
        return F.cross_entropy(logits, labels), fooled

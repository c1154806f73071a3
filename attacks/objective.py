"""The quantity an attack maximises on one batch, and the in-loop "already fooled?" check.

Both are defined on the same task view that torchattacks sees (``attacks.views.TaskView``): the
cross-entropy of its (N, C) logits on the row's label. For closed-answer tasks "fooled" is the argmax
leaving the true answer; for grounding it is the task's own decoding from the same encoder pass giving
IoU < 0.5, so the check costs a few decoder steps, not another encoder pass. Captioning is judged only
after the attack (decoding a caption at every step would cost more than the step itself).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attacks.views import TaskView
from robustbench_ofa.models.generation import sequence_nll


class Objective:
    """Loss and fooled-check for a subset ``rows`` of a view's batch."""

    def __init__(self, view: TaskView):
        self.view = view
        self.labels = view.labels()
        self.checks_in_loop = view.task.closed_answers or view.task.name == "grounding"

    def loss_and_fooled(self, images: torch.Tensor, rows: torch.Tensor,
                        need_fooled: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mean cross-entropy over ``rows`` (as torchattacks computes it) and which rows are fooled now."""
        view, task = self.view, self.view.task
        view.counters.add(rows, True)
        ids = view.input_ids.index_select(0, rows)
        labels = self.labels.index_select(0, rows)
        if task.closed_answers:
            logits = task.logits(view.model, ids, images)
            fooled = logits.detach().argmax(-1).ne(labels) if need_fooled else None
            return F.cross_entropy(logits, labels), fooled
        enc = task.encode(view.model, ids, images)
        nll = sequence_nll(view.model, enc, view.targets.index_select(0, rows))
        logits = torch.stack([-nll, torch.zeros_like(nll)], dim=1)
        fooled = None
        if need_fooled and task.name == "grounding":
            fooled = self._grounding_fooled(enc, rows)
        return F.cross_entropy(logits, labels), fooled

    @torch.no_grad()
    def _grounding_fooled(self, enc, rows: torch.Tensor) -> torch.Tensor:
        task, model = self.view.task, self.view.model
        enc = type(enc)(last_hidden_state=enc.last_hidden_state.detach(), padding_mask=enc.padding_mask,
                        position_embedding=enc.position_embedding.detach())
        samples = [self.view.batch.samples[int(r)] for r in rows]
        return torch.tensor([not task.judge(b, s).correct for b, s in zip(task.decode_boxes(model, enc, samples), samples)],
                            device=rows.device)

"""TextAttack ``ModelWrapper`` around one OFA sample (import only after ``resources.import_textattack``).

TextAttack hands the wrapper lists of candidate texts (up to the goal function's batch size); the wrapper
answers them through ``SampleQueries`` (image encoded once, batched, cached): closed-answer tasks as a
(N, C) tensor of answer-set scores (``UntargetedClassification`` turns them into probabilities with a
softmax), every other task as a list of the task's own outputs (``Task.text_outputs``), which the
task-judged goal function (``attacks.text.goals.TaskJudgedGoal``) reads.
"""

from __future__ import annotations

import torch
from textattack.models.wrappers import ModelWrapper

from attacks.text.queries import SampleQueries


class OFASampleWrapper(ModelWrapper):
    def __init__(self, queries: SampleQueries):
        self.queries = queries
        self.model = queries.model  # TextAttack inspects ``wrapper.model``

    def __call__(self, text_input_list, **kwargs):
        texts = [t if isinstance(t, str) else " ".join(t) for t in text_input_list]
        outs = self.queries.outputs(texts)
        return torch.stack(outs) if self.queries.task.closed_answers else list(outs)

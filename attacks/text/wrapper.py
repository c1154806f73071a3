"""TextAttack ``ModelWrapper`` around one OFA sample (import only after ``resources.import_textattack``).

TextAttack hands the wrapper lists of candidate texts (up to the goal function's batch size); the wrapper
answers them through ``SampleQueries`` (image encoded once, batched, cached):
  * ve / vqa: a (N, C) tensor of answer-set scores (``UntargetedClassification`` turns them into
    probabilities with a softmax);
  * grounding: a (N, 5) tensor ``[x0, y0, x1, y1, reference NLL]`` (``GroundingGoal``);
  * caption: a list of caption strings (text-to-text goals).
"""

from __future__ import annotations

import torch
from textattack.models.wrappers import ModelWrapper

from attacks.text.queries import GroundingOutput, SampleQueries


class OFASampleWrapper(ModelWrapper):
    def __init__(self, queries: SampleQueries):
        self.queries = queries
        self.model = queries.model  # TextAttack inspects ``wrapper.model``

    def __call__(self, text_input_list, **kwargs):
        texts = [t if isinstance(t, str) else " ".join(t) for t in text_input_list]
        outs = self.queries.outputs(texts)
        task = self.queries.task
        if task.closed_answers:
            return torch.stack(outs)
        if task.name == "grounding":
            return torch.tensor([[*o.box, o.nll] for o in outs], dtype=torch.float64)
        return list(outs)


def grounding_output(row: torch.Tensor) -> GroundingOutput:
    values = [float(v) for v in row.tolist()]
    return GroundingOutput(tuple(values[:4]), values[4])

"""Goal functions: when a text attack on an OFA task has succeeded, and how close a candidate is.

Success is the evaluator's own judgement, so a text counted as adversarial here is counted so in the
results:
  * ve / vqa (``ClosedAnswerGoal``): the top answer is no longer judged correct by the task (VQA: its
    VQA accuracy falls below 0.5; another acceptable answer is not a success). Score: 1 - p(true answer),
    TextAttack's untargeted score.
  * grounding (``GroundingGoal``): the predicted box has IoU < 0.5 with the reference box, exactly the
    task's rule. Score: 1 - IoU, plus a small tie-break from the reference box's NLL so that candidates
    leaving the box unchanged are still ranked (the score never decides success).
  * caption (``CaptionGoal``): CIDEr-D falls below (1 - drop) x the clean caption's CIDEr-D, the
    evaluator's caption rule (a ``MinimizeBleu``-style goal with the benchmark's metric). Score: the
    relative CIDEr-D drop.
"""

from __future__ import annotations

import math

import torch
from textattack.goal_function_results import TextToTextGoalFunctionResult
from textattack.goal_functions import GoalFunction, UntargetedClassification
from textattack.goal_functions.text.text_to_text_goal_function import TextToTextGoalFunction

from robustbench_ofa.data.types import Sample
from robustbench_ofa.tasks.base import Task

#: Weight of the NLL tie-break in the grounding score (below any IoU difference that matters).
NLL_TIE_BREAK = 0.01


class ClosedAnswerGoal(UntargetedClassification):
    def __init__(self, wrapper, task: Task, sample: Sample, **kwargs):
        self.task, self.sample = task, sample
        super().__init__(wrapper, **kwargs)

    def _is_goal_complete(self, model_output, _):
        answer = self.task.answers[int(model_output.argmax())]
        return not self.task.judge(answer, self.sample).correct


class GroundingGoal(GoalFunction):
    """Succeeds exactly when the predicted box's IoU with the reference box is below the task's threshold."""

    def __init__(self, wrapper, task: Task, sample: Sample, **kwargs):
        self.task, self.sample = task, sample
        super().__init__(wrapper, **kwargs)

    def judged(self, model_output):
        """The task's own judgement of the box (score = IoU, correct = IoU >= the task's threshold)."""
        return self.task.judge(tuple(float(v) for v in model_output[:4]), self.sample)

    def iou(self, model_output) -> float:
        return float(self.judged(model_output).score)

    def _is_goal_complete(self, model_output, _):
        return not self.judged(model_output).correct

    def _get_score(self, model_output, _):
        nll = float(model_output[4])
        return 1.0 - self.iou(model_output) + NLL_TIE_BREAK * (1.0 - math.exp(-max(nll, 0.0) / 4.0))

    def _goal_function_result_type(self):
        return TextToTextGoalFunctionResult

    def _process_model_outputs(self, inputs, outputs):
        return torch.as_tensor(outputs, dtype=torch.float64).reshape(len(inputs), 5)

    def _get_displayed_output(self, raw_output):
        return tuple(round(float(v), 2) for v in raw_output[:4])


class CaptionGoal(TextToTextGoalFunction):
    """Succeeds when the caption's CIDEr-D drops below ``(1 - drop) x clean_score``."""

    def __init__(self, wrapper, task: Task, sample: Sample, clean_score: float, drop: float = 0.5, **kwargs):
        self.task, self.sample = task, sample
        self.clean_score = float(clean_score)
        self.drop = float(drop)
        super().__init__(wrapper, **kwargs)

    def cider(self, caption: str) -> float:
        return float(self.task.judge(caption, self.sample).score)

    def _is_goal_complete(self, model_output, _):
        return self.cider(model_output) < (1.0 - self.drop) * self.clean_score

    def _get_score(self, model_output, _):
        if self.clean_score <= 0:
            return 0.0
        return max(0.0, 1.0 - self.cider(model_output) / self.clean_score)


def make_goal(task: Task, sample: Sample, wrapper, *, clean_score: float, caption_drop: float, query_budget: int,
              batch_size: int) -> tuple[GoalFunction, int | str]:
    """The goal function of ``task`` for ``sample`` and the ground truth TextAttack's ``attack`` expects."""
    common = dict(query_budget=query_budget, model_batch_size=batch_size)
    if task.closed_answers:
        return ClosedAnswerGoal(wrapper, task, sample, **common), int(task.label_index(sample))
    if task.name == "grounding":
        return GroundingGoal(wrapper, task, sample, **common), 0
    return CaptionGoal(wrapper, task, sample, clean_score, caption_drop, **common), "caption"

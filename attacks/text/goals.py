"""Goal functions: when a text attack on an OFA task has succeeded, and how close a candidate is.

Success is the evaluator's own judgement, so a text counted as adversarial here is counted so in the
results:
  * closed-answer tasks (``ClosedAnswerGoal``): the top answer is no longer judged correct by the task
    (VQA: its VQA accuracy falls below 0.5; another acceptable answer is not a success). Score:
    1 - p(true answer), TextAttack's untargeted score.
  * every other task (``TaskJudgedGoal``): the task's own ``Task.text_goal`` on its query output, which
    negates ``Task.adversarial_correct`` (grounding: IoU < 0.5, with a small NLL tie-break in the score;
    captioning: CIDEr-D below (1 - drop) x the clean caption's, a ``MinimizeBleu``-style goal with the
    benchmark's metric).
"""

from __future__ import annotations

from textattack.goal_functions import GoalFunction, UntargetedClassification
from textattack.goal_functions.text.text_to_text_goal_function import TextToTextGoalFunction

from robustbench_ofa.data.types import Sample
from robustbench_ofa.tasks.base import Task


class ClosedAnswerGoal(UntargetedClassification):
    def __init__(self, wrapper, task: Task, sample: Sample, **kwargs):
        self.task, self.sample = task, sample
        super().__init__(wrapper, **kwargs)

    def _is_goal_complete(self, model_output, _):
        answer = self.task.answers[int(model_output.argmax())]
        return not self.task.judge(answer, self.sample).correct


class TaskJudgedGoal(TextToTextGoalFunction):
    """Success and score are the task's (``Task.text_goal``) on the outputs ``Task.text_outputs`` gives."""

    def __init__(self, wrapper, task: Task, sample: Sample, clean_score: float = 0.0, drop: float = 0.5,
                 **kwargs):
        self.task, self.sample = task, sample
        self.clean_score = float(clean_score)
        self.drop = float(drop)
        super().__init__(wrapper, **kwargs)

    def _is_goal_complete(self, model_output, _):
        return self.task.text_goal(model_output, self.sample, self.clean_score, self.drop)[0]

    def _get_score(self, model_output, _):
        return self.task.text_goal(model_output, self.sample, self.clean_score, self.drop)[1]

    def _get_displayed_output(self, raw_output):
        return self.task.describe(self.task.output_value(raw_output))


def make_goal(task: Task, sample: Sample, wrapper, *, clean_score: float, caption_drop: float, query_budget: int,
              batch_size: int, clean_output=None) -> tuple[GoalFunction, int | str]:
    """The goal function of ``task`` for ``sample`` and the ground truth TextAttack's ``attack`` expects
    (closed tasks: the answer index; others: the clean output as text, TextAttack's convention)."""
    common = dict(query_budget=query_budget, model_batch_size=batch_size)
    if task.closed_answers:
        return ClosedAnswerGoal(wrapper, task, sample, **common), int(task.label_index(sample))
    truth = "" if clean_output is None else task.describe(task.output_value(clean_output))
    return TaskJudgedGoal(wrapper, task, sample, clean_score, caption_drop, **common), truth

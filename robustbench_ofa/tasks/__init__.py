"""OFA tasks (grounding, ve, vqa, caption): one registry, one module per kind of answer."""

from robustbench_ofa.tasks import caption, closed, grounding  # noqa: F401  (registration)
from robustbench_ofa.tasks.base import TASK_REGISTRY, Prediction, Task, TaskBatch, get_task
from robustbench_ofa.tasks.closed import ClosedAnswerTask

__all__ = ["TASK_REGISTRY", "ClosedAnswerTask", "Prediction", "Task", "TaskBatch", "get_task"]

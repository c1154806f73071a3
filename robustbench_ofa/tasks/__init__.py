"""OFA tasks (grounding, ve, vqa, caption): one registry, one module per kind of answer.

The registry is the task list: the order modules register in is the order tasks are listed in.
"""

from robustbench_ofa.tasks import grounding  # noqa: F401,I001  (registration, in the task order)
from robustbench_ofa.tasks import closed  # noqa: F401,I001
from robustbench_ofa.tasks import caption  # noqa: F401,I001
from robustbench_ofa.tasks.base import (
    TASK_REGISTRY,
    Prediction,
    Task,
    TaskBatch,
    canonical_task,
    get_task,
    instruction,
    is_task_name,
    target_text,
    task_class,
    task_classes,
    task_names,
)
from robustbench_ofa.tasks.closed import ClosedAnswerTask

__all__ = ["TASK_REGISTRY", "ClosedAnswerTask", "Prediction", "Task", "TaskBatch", "canonical_task", "get_task",
           "instruction", "is_task_name", "target_text", "task_class", "task_classes", "task_names"]

"""Training: the multi-task trainer, its config, resumable checkpoints and ablation grids."""

from robustbench_ofa.training.config import TrainConfig
from robustbench_ofa.training.loop import MAIN_METRIC, TrainResult, evaluate_clean, evaluate_tasks, train

__all__ = ["MAIN_METRIC", "TrainConfig", "TrainResult", "evaluate_clean", "evaluate_tasks", "train"]

"""What the trainer does at step ``s``: which task's batch, which samples, which learning rate.

Both are pure functions of (seed, step) and the data sizes, so a resumed run needs nothing but the
step counter to continue exactly where an uninterrupted run would be; no sampler state is saved.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from robustbench_ofa.training.config import TrainConfig


@dataclass(frozen=True)
class PlannedBatch:
    """One optimiser step's batch: a task name and indices into that task's sample list."""

    task: str
    indices: tuple[int, ...]


class BatchPlan:
    """Epochs of single-task batches, tasks interleaved evenly, reshuffled per epoch from (seed, epoch).

    Within an epoch each task's samples are permuted and cut into batches (the last one may be short);
    the batches of all tasks are then merged by their relative position in their own task, so tasks
    alternate (round-robin when the tasks are equally large) instead of running one after another.
    """

    def __init__(self, sizes: Mapping[str, int], batch_size: int, seed: int, stream: int = 0):
        self.sizes = {t: int(n) for t, n in sizes.items() if n > 0}
        self.batch_size = batch_size
        self.seed = seed
        self.stream = stream
        self.steps_per_epoch = sum(math.ceil(n / batch_size) for n in self.sizes.values())
        self._cache: tuple[int, list[PlannedBatch]] | None = None

    def epoch(self, epoch: int) -> list[PlannedBatch]:
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, self.stream, epoch, 0x0FA])
        keyed = []
        for order, (task, n) in enumerate(self.sizes.items()):
            perm = rng.permutation(n).tolist()
            chunks = [perm[i:i + self.batch_size] for i in range(0, n, self.batch_size)]
            for j, chunk in enumerate(chunks):
                keyed.append(((j + 0.5) / len(chunks), order, PlannedBatch(task, tuple(chunk))))
        plan = [b for _, _, b in sorted(keyed, key=lambda k: (k[0], k[1]))]
        self._cache = (epoch, plan)
        return plan

    def __getitem__(self, step: int) -> PlannedBatch:
        epoch, offset = divmod(step, self.steps_per_epoch)
        return self.epoch(epoch)[offset]

    def step(self, step: int) -> list[PlannedBatch]:
        """The batches of optimiser step ``step`` (one here)."""
        return [self[step]]


class MixedPlan:
    """Every optimiser step takes one batch of every task (gradients summed), as OFA's multi-task
    pretraining does; each task cycles through its own reshuffled epochs.

    One task per step (``BatchPlan``) lets the tasks pull the shared model in turn; summing them in one
    step gives a gradient that serves all tasks at once, which trains small models from scratch much
    faster when the tasks differ a lot (grounding vs answer classification).
    """

    def __init__(self, sizes: Mapping[str, int], batch_size: int, seed: int):
        self.plans = {t: BatchPlan({t: n}, batch_size, seed, stream=i + 1)
                      for i, (t, n) in enumerate(sizes.items()) if n > 0}
        self.steps_per_epoch = max(p.steps_per_epoch for p in self.plans.values())

    def step(self, step: int) -> list[PlannedBatch]:
        return [plan[step] for plan in self.plans.values()]


def make_plan(sizes: Mapping[str, int], batch_size: int, seed: int, mix: str) -> BatchPlan | MixedPlan:
    """The batch plan of a run: ``alternate`` (one task per step) or ``sum`` (every task every step)."""
    return MixedPlan(sizes, batch_size, seed) if mix == "sum" else BatchPlan(sizes, batch_size, seed)


def lr_factor(step: int, total: int, config: TrainConfig) -> float:
    """Multiplier of ``config.lr`` for the 0-based optimiser step ``step`` of ``total``.

    Linear warm-up from lr/warmup to lr, then linear or cosine decay towards ``min_lr_ratio * lr``
    (reached one step after the last, so no step is wasted at the floor), or constant.
    """
    warmup = config.warmup(total)
    if step < warmup:
        return (step + 1) / warmup
    if config.decay == "constant":
        return 1.0
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    floor = config.min_lr_ratio
    if config.decay == "cosine":
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - (1.0 - floor) * progress

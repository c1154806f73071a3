"""Benchmarks (pytest-benchmark) of adversarial training and of early stopping, beside their baselines.

Groups (``scripts/bench_ratios.py`` prints the ratios):
  * ``adv-train``: 3 finetuning steps with PGD-AT (k = 3 attack steps) vs 3 plain steps, batch 16. A
    PGD-AT step costs about k + 1 forward+backward passes; target: adversarial / ((k + 1) x plain) <= 1.15.
    (The attack differentiates with respect to the image only, so its passes skip weight gradients.)
  * ``early-stop``: PGD-10 on a batch of which part is already misclassified, with early stopping (a
    fooled row leaves the batch) vs without. ``extra_info`` holds the share fooled at the start.
Model: the embedded zoo's architecture at 96 px, VE (fresh weights: speed does not depend on them).
"""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import embedded_ve

from attacks import AttackParams, run_attack
from attacks.views import TaskView
from robustbench_ofa.training.config import TrainConfig
from robustbench_ofa.training.loop import train
from robustbench_ofa.tuning import get_method

pytestmark = pytest.mark.benchmark
K = 3
STEPS = 3


@pytest.fixture(scope="module")
def setup(micro_tokenizer):
    return embedded_ve(micro_tokenizer, 16 * STEPS)


def _fresh(setup, adv: str):
    """Untimed: a fresh finetunable copy of the model for every round."""
    model, task, samples = setup
    tuned = copy.deepcopy(model)
    get_method("finetune").apply(tuned)
    return (tuned, task, samples, adv), {}


def _train(tuned, task, samples, adv: str):
    at = {} if adv == "none" else {"adv": adv, "adv_eps": 4 / 255, "adv_steps": K}
    cfg = TrainConfig(lr=1e-4, batch_size=16, max_steps=STEPS, warmup_steps=0, **at)
    return train(tuned, {"ve": task}, {"ve": samples}, cfg, progress=False)


def test_bench_train_plain_steps(benchmark, setup):
    benchmark.group = "adv-train"
    benchmark.extra_info["multiplier"] = K + 1
    benchmark.pedantic(_train, setup=lambda: _fresh(setup, "none"), rounds=3, warmup_rounds=1)


def test_bench_train_pgd_at_steps(benchmark, setup):
    benchmark.group = "adv-train"
    result = benchmark.pedantic(_train, setup=lambda: _fresh(setup, "pgd"), rounds=3, warmup_rounds=1)
    assert result.grad_evals == STEPS * 16 * (K + 1)


def _pgd(setup, early_stop: bool):
    model, task, samples = setup
    batch = task.collate(samples[:16])
    params = AttackParams(steps=10, early_stop=early_stop)
    return run_attack("pgd", TaskView(model, task, batch), batch.images, 4 / 255, params, list(range(16)))


def test_bench_pgd10_early_stop(benchmark, setup):
    model, task, samples = setup
    batch = task.collate(samples[:16])
    with torch.no_grad():
        wrong = [not p.correct for p in task.predict(model, batch)]
    benchmark.group = "early-stop"
    benchmark.extra_info["fooled_at_start"] = sum(wrong) / len(wrong)
    res = benchmark.pedantic(_pgd, args=(setup, True), rounds=3, warmup_rounds=1)
    assert bool(res.stopped.any())


def test_bench_pgd10_no_early_stop(benchmark, setup):
    benchmark.group = "early-stop"
    benchmark.pedantic(_pgd, args=(setup, False), rounds=3, warmup_rounds=1)

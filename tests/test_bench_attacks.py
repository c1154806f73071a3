"""Benchmarks (pytest-benchmark) of the attack hot paths, each beside its baseline in the same run.

Groups (compare within a group; ``scripts/bench_ratios.py`` prints the ratios from the JSON):
  * ``pgd-cost``: one forward+backward of a batch vs PGD-10 on it (target: PGD-k <= 1.15 x k x fwd+bwd);
  * ``pgd-vs-stock``: torchattacks.PGD through the (N, C) task view vs the project's PGD, no random
    start, same images (asserted equal), early stopping off so both do the same work.
Model: the embedded zoo's architecture at 96 px (fresh weights: speed does not depend on them).
"""

from __future__ import annotations

import pytest
import torch
import torchattacks
from conftest import embedded_ve

from attacks import AttackParams, run_attack
from attacks.views import TaskView

pytestmark = pytest.mark.benchmark
STEPS = 10


@pytest.fixture(scope="module")
def setup(micro_tokenizer):
    model, task, samples = embedded_ve(micro_tokenizer, 16)
    return model, task, task.collate(samples)


def _fwd_bwd(model, task, batch):
    x = batch.images.clone().requires_grad_(True)
    logits = task.logits(model, batch.input_ids, x)
    return torch.autograd.grad(torch.nn.functional.cross_entropy(logits, task.labels(batch.samples)), x)[0]


def _ours(model, task, batch):
    params = AttackParams(steps=STEPS, alpha=1 / 255, random_start=False, early_stop=False)
    return run_attack("pgd", TaskView(model, task, batch), batch.images, 4 / 255, params, list(range(len(batch)))).adv


def _stock(model, task, batch):
    view = TaskView(model, task, batch)
    return torchattacks.PGD(view, eps=4 / 255, alpha=1 / 255, steps=STEPS, random_start=False)(batch.images,
                                                                                              view.labels())


def test_bench_fwd_bwd_once(benchmark, setup):
    benchmark.group = "pgd-cost"
    benchmark.extra_info["multiplier"] = STEPS
    benchmark.pedantic(_fwd_bwd, args=setup, rounds=5, warmup_rounds=1)


def test_bench_pgd10_ours(benchmark, setup):
    benchmark.group = "pgd-cost"
    benchmark.pedantic(_ours, args=setup, rounds=5, warmup_rounds=1)


def test_bench_pgd10_stock_torchattacks(benchmark, setup):
    benchmark.group = "pgd-vs-stock"
    adv = benchmark.pedantic(_stock, args=setup, rounds=5, warmup_rounds=1)
    assert torch.equal(adv, _ours(*setup))


def test_bench_pgd10_ours_vs_stock(benchmark, setup):
    benchmark.group = "pgd-vs-stock"
    benchmark.pedantic(_ours, args=setup, rounds=5, warmup_rounds=1)

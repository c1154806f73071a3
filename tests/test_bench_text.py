"""Benchmark (pytest-benchmark): candidate texts scored per second by a text attack's goal function.

Group ``text-queries``: the same 64 distinct candidate hypotheses of one VE sample, scored through
TextAttack's ``GoalFunction.get_results`` (a fresh goal function and query object per round, so neither
TextAttack's cache nor ours carries over), either
  * batched: ``OFASampleWrapper`` over ``SampleQueries`` (image encoded once, 32 candidates per model call), or
  * one at a time: TextAttack's default path with a plain per-text wrapper (batch size 1, the image
    re-encoded for every candidate; ``UnbatchedQueries``).
Target: batched >= 4x the candidates per second (``scripts/bench_ratios.py`` prints the ratio).
Model: the embedded zoo's architecture at 96 px (fresh weights: speed does not depend on them).
"""

from __future__ import annotations

import pytest
import torch

from attacks.text.resources import import_textattack
from robustbench_ofa.data import synthetic as syn
from robustbench_ofa.models import OFAConfig, OFAModel
from robustbench_ofa.tasks import get_task
from robustbench_ofa.zoo.recipe import EMBEDDED

pytestmark = pytest.mark.benchmark
N_CANDIDATES = 64


@pytest.fixture(scope="module")
def setup(micro_tokenizer):
    import_textattack()  # missing resources: an error naming the set-up command (never a silent skip)
    torch.manual_seed(0)
    cfg = OFAConfig(**{**EMBEDDED.model, "vocab_size": micro_tokenizer.vocab_size})
    model = OFAModel(cfg).eval()
    task = get_task("ve", micro_tokenizer, EMBEDDED.image_size)
    sample = syn.generate("ve", "test", 1, EMBEDDED.scene_config())[0]
    image = task.collate([sample]).images[0]
    vocab = ["red", "blue", "green", "large", "small", "circle", "square", "wooden", "left", "cross", "tiny",
             "above", "below", "bright", "dark", "round"]
    words = sample.text.split()
    texts = list(dict.fromkeys(" ".join(words[:i] + [w] + words[i + 1:]) for i in range(len(words)) for w in vocab))
    assert len(texts) >= N_CANDIDATES
    return model, task, sample, image, texts[:N_CANDIDATES]


def _score(model, task, sample, image, texts, batched: bool):
    from textattack.shared import AttackedText

    from attacks.text.goals import make_goal
    from attacks.text.queries import SampleQueries, UnbatchedQueries
    from attacks.text.wrapper import OFASampleWrapper

    queries = (SampleQueries if batched else UnbatchedQueries)(model, task, sample, image, batch_size=32)
    goal, truth = make_goal(task, sample, OFASampleWrapper(queries), clean_score=1.0, caption_drop=0.5,
                            query_budget=10**6, batch_size=32 if batched else 1)
    goal.ground_truth_output, goal.num_queries = truth, 0
    results, _ = goal.get_results([AttackedText(t) for t in texts])
    return [r.score for r in results]


def test_bench_text_queries_batched(benchmark, setup):
    benchmark.group = "text-queries"
    benchmark.extra_info["candidates"] = N_CANDIDATES
    scores = benchmark.pedantic(_score, args=(*setup, True), rounds=3, warmup_rounds=1)
    assert scores == pytest.approx(_score(*setup, False), abs=1e-4)


def test_bench_text_queries_one_at_a_time(benchmark, setup):
    benchmark.group = "text-queries"
    benchmark.extra_info["candidates"] = N_CANDIDATES
    benchmark.pedantic(_score, args=(*setup, False), rounds=3, warmup_rounds=1)

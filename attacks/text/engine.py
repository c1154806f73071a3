"""Running a text recipe on a batch of samples: one TextAttack attack per sample, seeded, summarised.

TextAttack attacks one example at a time; here each sample gets its own query object (its image encoded
once) and goal function, and TextAttack's search proposes candidates that the wrapper scores in batches.
Random choices (DeepWordBug's character edits, differential evolution) draw from generators seeded by
the sample's own seed before its attack, so a sample's result does not depend on its batch and reruns
give identical results.

Every recipe ends its constraints with the sample's label-keeping checks (``attacks.text.validity``:
the generated benchmark's oracle, antonyms, ``--protect``). After the search, the candidates they
rejected are scored (up to ``budget.queries`` of them, batched, outside the attack's query budget) and
those the model would have got wrong are counted: ``TextOutcome.rejected_successes``, the validity figure
(how many "successes" an unchecked attack could have reported that change or break the question).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from attacks.registry import ATTACKS
from attacks.text.budget import TextBudget, words, words_changed
from attacks.text.queries import SampleQueries, attack_text
from attacks.text.resources import import_textattack, require
from robustbench_ofa.data.types import Sample
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.tasks.base import Task


@dataclass
class TextOutcome:
    """One sample's text attack: TextAttack's verdict on its own scores, and what the attack produced."""

    original: str
    adversarial: str
    #: "successful", "failed" or "skipped" (TextAttack's result kinds)
    status: str
    #: TextAttack's query count (candidates submitted to the goal function, cache hits included)
    queries: int
    #: candidate texts actually run through the model
    evaluations: int
    words_changed: int
    n_words: int
    #: candidates the validity checks rejected on which the model's answer would have counted as a success
    rejected_successes: int = 0
    #: the same, by the check that rejected them ("oracle", "antonym", "cohyponym", "protect")
    rejected_by: dict = field(default_factory=dict)
    #: rejected candidates scored to count them (at most the query budget; not in ``queries``/``evaluations``)
    rejected_checked: int = 0
    #: distinct candidates every check passed (scored by the search); 0: the attack had nothing valid to try,
    #: so a sample it did not fool is no evidence of robustness
    valid_candidates: int = 0
    #: every distinct candidate the validity checks rejected, by the check that rejected it first
    rejected_candidates: dict = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run_text_attack(name: str, model, task: Task, samples: Sequence[Sample], images: torch.Tensor,
                    budget: TextBudget, seeds: Sequence[int], clean_scores: Sequence[float] | None = None,
                    caption_drop: float = 0.5) -> list[TextOutcome]:
    """Attack each sample's text (image fixed) with recipe ``name``; ``images`` are the model's [0, 1] inputs."""
    spec = ATTACKS.get(name)
    if spec.recipe is None:
        raise RobustOFAError(f"attack {name!r} is not a text attack (expected a registered text recipe)")
    res = require(spec.needs)
    import_textattack(res)
    from textattack.attack_results import SkippedAttackResult, SuccessfulAttackResult

    from attacks.text.components import RecipeContext, ValidityGate
    from attacks.text.goals import make_goal
    from attacks.text.validity import answer_words, checks_for
    from attacks.text.wrapper import OFASampleWrapper

    scores = list(clean_scores) if clean_scores is not None else [0.0] * len(samples)
    # answer-bearing words are protected; normalised once here, not per sample (VQAv2 has 3,129 answers)
    answers = answer_words(task.answers) if task.closed_answers else frozenset()
    out = []
    for sample, image, seed, clean_score in zip(samples, images, seeds, scores):
        queries = SampleQueries(model, task, sample, image, batch_size=budget.batch_size)
        wrapper = OFASampleWrapper(queries)
        clean_output = None if task.closed_answers else queries.outputs([attack_text(task, sample)])[0]
        goal, truth = make_goal(task, sample, wrapper, clean_score=clean_score, caption_drop=caption_drop,
                                query_budget=budget.queries, batch_size=budget.batch_size,
                                clean_output=clean_output)
        seed_everything(int(seed))
        gate = ValidityGate(checks_for(sample, budget.protect, res, answers, spec.substitutes_words))
        attacks = spec.recipe(RecipeContext(goal, budget, res, int(seed), gate))
        original = attack_text(task, sample)
        used, result, status = 0, None, "failed"
        with torch.no_grad():
            for attack in attacks:
                goal.query_budget = max(1, budget.queries - used)
                result = attack.attack(original, truth)
                used += int(goal.num_queries)
                if isinstance(result, SkippedAttackResult):
                    status = "skipped"
                    break
                if isinstance(result, SuccessfulAttackResult):
                    status = "successful"
                    break
                if used >= budget.queries:
                    break
        adversarial = result.perturbed_result.attacked_text.text if status != "skipped" else original
        evaluations = queries.evaluations
        rejected = _rejected_successes(gate, goal, queries, budget.queries) if status != "skipped" else ({}, 0)
        out.append(TextOutcome(original=original, adversarial=adversarial, status=status, queries=used,
                               evaluations=evaluations, words_changed=words_changed(original, adversarial),
                               n_words=len(words(original)), rejected_successes=sum(rejected[0].values()),
                               rejected_by=rejected[0], rejected_checked=rejected[1], valid_candidates=gate.kept,
                               rejected_candidates=gate.rejected_counts()))
    return out


def _rejected_successes(gate, goal, queries: SampleQueries, limit: int) -> tuple[dict[str, int], int]:
    """(check name -> rejected candidates that would have succeeded, candidates scored): the first
    ``limit`` rejected candidates, judged by the sample's own goal function."""
    texts = list(gate.rejected)[:limit]
    counts: dict[str, int] = {}
    with torch.no_grad():
        outputs = queries.outputs(texts)
    for text, output in zip(texts, outputs):
        if goal._is_goal_complete(output, None):
            why = gate.rejected[text]
            counts[why] = counts.get(why, 0) + 1
    return dict(sorted(counts.items())), len(texts)

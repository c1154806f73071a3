"""TextAttack building blocks shared by the offline recipes (``attacks.text.recipes``) and the work-arounds
for TextAttack 0.3.11's breakages (see each class). Imports TextAttack: import only after
``resources.import_textattack()`` (the recipe modules do so inside their builders).
"""


from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from textattack.constraints import Constraint
from textattack.search_methods import DifferentialEvolution
from textattack.shared import WordEmbedding
from textattack.transformations import (
    WordSwapWordNet,
)

from attacks.text.budget import TextBudget, words_changed
from attacks.text.resources import TextResources

#: TextFooler-like word-embedding thresholds (see ``attacks.text.recipes.textfooler_glove``); its sentence
#: similarity is the validity gate's word-sense check (``attacks.text.validity.SenseCheck``).
GLOVE_MIN_COS = 0.5
GLOVE_CANDIDATES = 50
#: Differential evolution (Bad Characters' defaults: population multiplier 32, 10 generations).
DE_POPSIZE = 32
DE_MAXITER = 10


class WordBudget(Constraint):
    """At most ``max_words`` whitespace words differ from the original (``attacks.text.budget``)."""

    def __init__(self, max_words: int):
        super().__init__(compare_against_original=True)
        self.max_words = int(max_words)

    def _check_constraint(self, transformed_text, reference_text):
        return words_changed(reference_text.text, transformed_text.text) <= self.max_words

    def extra_repr_keys(self):
        return ["max_words"]


class ValidityGate(Constraint):
    """The last constraint of every recipe: the label-keeping checks of ``attacks.text.validity`` (oracle,
    antonym, cohyponym, protect; pos and sense for word substitutions). A candidate failing one is never scored by the search, so it can never count as a
    success. The gate records what it rejected (text -> the first failing check) so that the engine can
    measure afterwards how many of those would have been successes (the validity figure)."""

    def __init__(self, checks):
        super().__init__(compare_against_original=True)
        self.checks = list(checks)
        #: rejected candidate text -> name of the check that rejected it (first rejection order)
        self.rejected: dict[str, str] = {}
        #: candidates that passed every check (the search scores each once: TextAttack caches constraints)
        self.kept = 0

    def rejected_counts(self) -> dict[str, int]:
        """Check name -> distinct candidates it rejected (each counted once, by the first check failing)."""
        out: dict[str, int] = {}
        for why in self.rejected.values():
            out[why] = out.get(why, 0) + 1
        return dict(sorted(out.items()))

    def reason(self, original: str, candidate: str) -> str | None:
        """The name of the first check ``candidate`` fails, or None."""
        return next((c.name for c in self.checks if not c(original, candidate)), None)

    def _check_constraint(self, transformed_text, reference_text):
        why = self.reason(reference_text.text, transformed_text.text)
        if why is not None:
            self.rejected.setdefault(transformed_text.text, why)
        else:
            self.kept += 1
        return why is None

    def _check_constraint_many(self, transformed_texts, reference_text):
        """One search step's candidates, check by check: a check with ``many`` (the sense check's encoder)
        runs once on what the earlier checks kept, not once per candidate."""
        original, alive = reference_text.text, list(transformed_texts)
        for check in self.checks:
            if not alive:
                break
            texts = [t.text for t in alive]
            keep = check.many(original, texts) if hasattr(check, "many") else [check(original, x) for x in texts]
            for text, kept in zip(texts, keep):
                if not kept:
                    self.rejected.setdefault(text, check.name)
            alive = [t for t, kept in zip(alive, keep) if kept]
        self.kept += len(alive)
        return alive

    def extra_repr_keys(self):
        return ["checks"]


class OfflineWordNetSwap(WordSwapWordNet):
    """``WordSwapWordNet`` without its ``nltk.download('omw-1.4')`` (English WordNet needs no OMW)."""

    def __init__(self):
        self.language = "eng"


@lru_cache(maxsize=2)
def glove_embedding(folder: str) -> WordEmbedding:
    """TextAttack ``WordEmbedding`` over the installed GloVe vocabulary with precomputed neighbours."""
    root = Path(folder)
    words = root.joinpath("words.txt").read_text().split("\n")[:-1]
    vectors = np.load(root / "vectors.npy")
    nn = np.load(root / "neighbours.npy")
    return WordEmbedding(vectors, {w: i for i, w in enumerate(words)}, dict(enumerate(words)), nn)


class BatchedDifferentialEvolution(DifferentialEvolution):
    """TextAttack's DE search with each generation scored in one batch, stopping on success or budget."""

    def __init__(self, seed: int, **kwargs):
        super().__init__(**kwargs)
        self.seed = int(seed)

    def perform_search(self, initial_result):
        from scipy.optimize import differential_evolution
        from textattack.goal_function_results import GoalFunctionResultStatus

        text = initial_result.attacked_text
        bounds, pre = self.get_bounds_and_precomputed(text, self.max_perturbs)
        best = {"score": -np.inf, "result": None, "stop": False}

        def objective(x: np.ndarray) -> np.ndarray:
            cols = x.T if x.ndim == 2 else x[None]
            values = np.full(len(cols), np.inf)
            if best["stop"]:
                return values
            cands = [self.apply_perturbation(text, v, pre) for v in cols]
            for c in cands:  # TextAttack's DE leaves this unset, and every constraint then raises KeyError
                c.attack_attrs["last_transformation"] = self._transformation
            valid = {c.text: c for c in self.filter_transformations(cands, text, text)}
            results, over = self.get_goal_results(list(valid.values())) if valid else ([], False)
            by_text = {r.attacked_text.text: r for r in results}
            for i, c in enumerate(cands):
                r = by_text.get(c.text)
                if r is None:
                    continue
                values[i] = -r.score
                if r.score > best["score"]:
                    best["score"], best["result"] = r.score, r
                if r.goal_status == GoalFunctionResultStatus.SUCCEEDED:
                    best["stop"] = True
            best["stop"] = best["stop"] or over
            return values

        kwargs = dict(maxiter=self.maxiter, popsize=self.popsize, polish=False, vectorized=True,
                      updating="deferred", callback=lambda *a, **k: best["stop"])
        try:
            differential_evolution(objective, bounds, rng=np.random.default_rng(self.seed), **kwargs)
        except TypeError:  # scipy < 1.15 names the generator ``seed``
            differential_evolution(objective, bounds, seed=np.random.default_rng(self.seed), **kwargs)
        result = best["result"]
        return result if result is not None and result.score > initial_result.score else initial_result

    def check_transformation_compatibility(self, transformation):
        self._transformation = transformation
        return super().check_transformation_compatibility(transformation)


@dataclass(frozen=True)
class RecipeContext:
    goal_function: object
    budget: TextBudget
    resources: TextResources
    seed: int
    #: the sample's label-keeping checks (``ValidityGate``); None only for a bare recipe outside the engine
    validity: ValidityGate | None = None

    def checked(self, constraints: list) -> list:
        """A recipe's constraints with the validity gate last (it sees only candidates every other constraint
        passed, so what it rejects is exactly what the search would otherwise have scored)."""
        return [*constraints, self.validity] if self.validity is not None else list(constraints)



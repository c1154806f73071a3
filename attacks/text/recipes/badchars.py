"""Bad Characters (Boucher et al. 2021): invisible characters, then Bidi reorderings, then deletion control
characters, each a differential-evolution search, until one succeeds. Homoglyphs are left out (the wheel
lacks ``intentional_homoglyphs.txt``). TextAttack's DE search evaluates one candidate per model call,
ignores the query budget and does not stop on success; ``BatchedDifferentialEvolution`` scores each
generation in one batch, stops on success or budget, and is seeded.
"""

from attacks.registry import AttackSpec, register
from attacks.text.options import TextOptions
from attacks.threat import Threat


def build(ctx) -> list:
    from textattack import Attack
    from textattack.transformations import WordSwapDeletions, WordSwapInvisibleCharacters, WordSwapReorderings

    from attacks.text.components import DE_MAXITER, DE_POPSIZE, BatchedDifferentialEvolution, WordBudget

    attacks = []
    for i, transformation in enumerate((WordSwapInvisibleCharacters(), WordSwapReorderings(), WordSwapDeletions())):
        search = BatchedDifferentialEvolution(ctx.seed + i, popsize=DE_POPSIZE, maxiter=DE_MAXITER,
                                              max_perturbs=ctx.budget.words)
        attacks.append(Attack(ctx.goal_function, ctx.checked([WordBudget(ctx.budget.words)]), transformation, search))
    return attacks


register(AttackSpec("badchars", "Bad Characters", Threat.TEXT, "black-box",
                    "Bad Characters: invisible, reordering and deletion characters (DE search)",
                    recipe=build, options=TextOptions))

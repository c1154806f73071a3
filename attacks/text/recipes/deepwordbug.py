"""DeepWordBug (Gao et al. 2018): character swap/substitute/delete/insert, greedy by word importance ("unk"
ranking), Levenshtein <= 30."""

from attacks.registry import AttackSpec, register
from attacks.text.options import TextOptions
from attacks.threat import Threat


def build(ctx) -> list:
    from textattack import Attack
    from textattack.constraints.overlap import LevenshteinEditDistance
    from textattack.constraints.pre_transformation import RepeatModification, StopwordModification
    from textattack.search_methods import GreedyWordSwapWIR
    from textattack.transformations import (
        CompositeTransformation,
        WordSwapNeighboringCharacterSwap,
        WordSwapRandomCharacterDeletion,
        WordSwapRandomCharacterInsertion,
        WordSwapRandomCharacterSubstitution,
    )

    from attacks.text.components import WordBudget

    transformation = CompositeTransformation([
        WordSwapNeighboringCharacterSwap(), WordSwapRandomCharacterSubstitution(),
        WordSwapRandomCharacterDeletion(), WordSwapRandomCharacterInsertion()])
    constraints = [RepeatModification(), StopwordModification(), LevenshteinEditDistance(30),
                   WordBudget(ctx.budget.words)]
    return [Attack(ctx.goal_function, ctx.checked(constraints), transformation, GreedyWordSwapWIR("unk"))]


register(AttackSpec("deepwordbug", "DeepWordBug", Threat.TEXT, "black-box",
                    "DeepWordBug: character edits, greedy by word importance", recipe=build, options=TextOptions))

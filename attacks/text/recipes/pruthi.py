"""Pruthi et al. (2019): typo-like edits inside words of >= 4 letters, first/last letter kept, greedy."""

from attacks.registry import AttackSpec, register
from attacks.text.options import TextOptions
from attacks.threat import Threat


def build(ctx) -> list:
    from textattack import Attack
    from textattack.constraints.pre_transformation import (
        MinWordLength,
        RepeatModification,
        StopwordModification,
    )
    from textattack.search_methods import GreedySearch
    from textattack.transformations import (
        CompositeTransformation,
        WordSwapNeighboringCharacterSwap,
        WordSwapQWERTY,
        WordSwapRandomCharacterDeletion,
        WordSwapRandomCharacterInsertion,
    )

    from attacks.text.components import WordBudget

    edit = dict(random_one=False, skip_first_char=True, skip_last_char=True)
    transformation = CompositeTransformation([
        WordSwapNeighboringCharacterSwap(**edit), WordSwapRandomCharacterDeletion(**edit),
        WordSwapRandomCharacterInsertion(**edit), WordSwapQWERTY(**edit)])
    constraints = [MinWordLength(min_length=4), StopwordModification(), WordBudget(ctx.budget.words),
                   RepeatModification()]
    return [Attack(ctx.goal_function, ctx.checked(constraints), transformation, GreedySearch())]


register(AttackSpec("pruthi", "Pruthi", Threat.TEXT, "black-box", "Pruthi et al.: typo-like character edits, greedy",
                    recipe=build, options=TextOptions))

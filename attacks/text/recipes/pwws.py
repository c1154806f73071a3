"""PWWS (Ren et al. 2019): WordNet synonyms ranked by probability-weighted word saliency.

``WordSwapWordNet``'s constructor calls ``nltk.download('omw-1.4')`` (network): ``OfflineWordNetSwap`` skips it.
A synonym in *some* sense of the word is not one in the sentence's: the validity gate's part-of-speech and
word-sense checks (``attacks.text.validity``) reject "blue" -> "dismal" and "does" -> "exercise".
"""

from attacks.registry import AttackSpec, register
from attacks.text.options import TextOptions
from attacks.threat import Threat


def build(ctx) -> list:
    from textattack import Attack
    from textattack.constraints.pre_transformation import RepeatModification, StopwordModification
    from textattack.search_methods import GreedyWordSwapWIR

    from attacks.text.components import OfflineWordNetSwap, WordBudget

    constraints = [RepeatModification(), StopwordModification(), WordBudget(ctx.budget.words)]
    return [Attack(ctx.goal_function, ctx.checked(constraints), OfflineWordNetSwap(),
                   GreedyWordSwapWIR("weighted-saliency"))]


register(AttackSpec("pwws", "PWWS", Threat.TEXT, "black-box",
                    "PWWS: WordNet synonyms by probability-weighted word saliency",
                    needs=("wordnet", "minilm", "tagger"), substitutes_words=True, recipe=build,
                    options=TextOptions))

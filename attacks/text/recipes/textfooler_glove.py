"""TextFooler-like (Jin et al. 2020): TextFooler's search and constraints with the swaps from GloVe 6B 50d
neighbours (cosine >= 0.5) instead of counter-fitted vectors. Its sentence-similarity and part-of-speech
constraints are the validity gate's ``sense`` check (all-MiniLM-L6-v2 on the whole text instead of the
Universal Sentence Encoder, threshold calibrated on hand-labelled pairs) and ``pos`` check (TextBlob's
Pattern tagger instead of NLTK's), so their rejections are counted with the others (``attacks.text.validity``).
GloVe's neighbours include antonyms and co-hyponyms ("large" -> "small", "purple" -> "blue"), which
counter-fitting pushed apart: the gate's antonym and sister-term checks reject them. Not TextFooler as
published: a TextFooler-like attack, named so.
"""

from attacks.registry import AttackSpec, register
from attacks.text.options import TextOptions
from attacks.threat import Threat


def build(ctx) -> list:
    from textattack import Attack
    from textattack.constraints.pre_transformation import RepeatModification, StopwordModification
    from textattack.constraints.semantics import WordEmbeddingDistance
    from textattack.search_methods import GreedyWordSwapWIR
    from textattack.transformations import WordSwapEmbedding

    from attacks.text.components import GLOVE_CANDIDATES, GLOVE_MIN_COS, WordBudget, glove_embedding

    embedding = glove_embedding(str(ctx.resources.glove))
    constraints = [RepeatModification(), StopwordModification(),
                   WordEmbeddingDistance(embedding=embedding, min_cos_sim=GLOVE_MIN_COS), WordBudget(ctx.budget.words)]
    transformation = WordSwapEmbedding(max_candidates=GLOVE_CANDIDATES, embedding=embedding)
    return [Attack(ctx.goal_function, ctx.checked(constraints), transformation, GreedyWordSwapWIR("delete"))]


register(AttackSpec("textfooler-glove", "TextFooler-GloVe", Threat.TEXT, "black-box",
                    "TextFooler-like: GloVe neighbours + MiniLM similarity, greedy by deletion",
                    needs=("glove", "minilm", "tagger"), substitutes_words=True, recipe=build, options=TextOptions))

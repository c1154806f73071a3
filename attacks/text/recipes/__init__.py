"""Text attack recipes that run offline, one module each (as TextAttack lays its recipes out).

Each recipe is TextAttack's published one, rebuilt from TextAttack components (``attacks.text.components``)
so that it (1) runs on the offline resources (``attacks.text.resources``), (2) counts its budget in
whitespace words (``WordBudget``, default 1 word, the vision-language convention), (3) ends its constraints
with the label-keeping checks (``RecipeContext.checked``: ``attacks.text.validity``) and (4) works around
TextAttack 0.3.11 breakages. A recipe module registers its ``AttackSpec`` without importing TextAttack;
its builder (``recipe``: a ``RecipeContext`` -> TextAttack attacks, run in order until one succeeds, one
shared query budget) imports it when an attack actually runs.
"""

from attacks.text.recipes import badchars, deepwordbug, pruthi, pwws, textfooler_glove  # noqa: F401

"""The model zoo: the embedded (built-on-first-use) models, user registrations, and RobustBench-style cards.

Typical use::

    from robustbench_ofa import zoo
    for card in zoo.list_models():            # never builds
        print(card.name, card.clean)
    entry = zoo.get("embedded-prompt-64")     # builds the embedded zoo on first use
    entry.model, entry.tokenizer, entry.card, entry.image_size
    samples = zoo.embedded_test_samples("vqa")
"""

from robustbench_ofa.zoo.build import ensure_embedded, zoo_root
from robustbench_ofa.zoo.cards import ModelCard
from robustbench_ofa.zoo.home import ENV_VAR, resolve_home
from robustbench_ofa.zoo.recipe import EMBEDDED, VariantRecipe, ZooRecipe, micro_recipe
from robustbench_ofa.zoo.registry import (
    ZooModel,
    embedded_names,
    embedded_test_samples,
    get,
    list_models,
    load_embedded,
    register,
    unregister,
)

__all__ = [
    "EMBEDDED",
    "ENV_VAR",
    "ModelCard",
    "VariantRecipe",
    "ZooModel",
    "ZooRecipe",
    "embedded_names",
    "embedded_test_samples",
    "ensure_embedded",
    "get",
    "list_models",
    "load_embedded",
    "micro_recipe",
    "register",
    "resolve_home",
    "unregister",
    "zoo_root",
]

"""Model cards, re-exported: they live in ``robustbench_ofa.cards`` (below training and the zoo, which both
write them). Kept so ``from robustbench_ofa.zoo.cards import ModelCard`` goes on working."""

from robustbench_ofa.cards import (
    CARD_FILE,
    CARD_VERSION,
    REQUIRED,
    ModelCard,
    atomic_write_text,
    package_versions,
)

__all__ = ["CARD_FILE", "CARD_VERSION", "REQUIRED", "ModelCard", "atomic_write_text", "package_versions"]

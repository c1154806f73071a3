"""The text attacks by name: what each is and which offline resources it needs (no TextAttack import).

The recipes themselves are in ``attacks.text.recipes`` (which imports TextAttack); this list is what the
attack registry, the CLI and the resource check read before any work starts.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TextAttackInfo:
    name: str
    description: str
    #: offline resources beyond the stop-word list every recipe uses
    needs: tuple[str, ...] = ()


TEXT_RECIPES: dict[str, TextAttackInfo] = {i.name: i for i in (
    TextAttackInfo("deepwordbug", "DeepWordBug: character edits, greedy by word importance"),
    TextAttackInfo("pruthi", "Pruthi et al.: typo-like character edits, greedy"),
    TextAttackInfo("pwws", "PWWS: WordNet synonyms by probability-weighted word saliency", ("wordnet",)),
    TextAttackInfo("textfooler-glove", "TextFooler-like: GloVe neighbours + MiniLM similarity, greedy by deletion",
                   ("glove", "minilm")),
    TextAttackInfo("badchars", "Bad Characters: invisible, reordering and deletion characters (DE search)"),
)}
#: The joint image+text attack (``attacks.text.joint``); its text stage is one of ``TEXT_RECIPES``.
CO_ATTACK = "co-attack"
DEFAULT_CO_TEXT = "pwws"

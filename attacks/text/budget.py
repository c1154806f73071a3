"""The text budget: how many words a perturbation may change, counted one way everywhere.

Words are whitespace-separated tokens, as the reports' word diff shows them. TextAttack's own count
(``AttackedText.all_words_diff``) splits on non-word characters and compares by position, so one
invisible character inside a word, or a split word, shifts every later word and is counted as many
changes; counting whitespace tokens through an alignment instead makes "1 word" mean one visible word
for every recipe, character-level ones included.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass


def words(text: str) -> list[str]:
    return text.split()


def words_changed(original: str, perturbed: str) -> int:
    """Tokens of ``original`` replaced or deleted, or inserted into it (the larger side of each edit)."""
    a, b = words(original), words(perturbed)
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b))
    ops = difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()
    return sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in ops if tag != "equal")


def edits(original: str, perturbed: str) -> list[tuple[list[str], list[str]]]:
    """The edits ``words_changed`` counts, as (original tokens, new tokens) pairs (an insertion has no
    original tokens, a deletion no new ones)."""
    a, b = words(original), words(perturbed)
    if len(a) == len(b):
        return [([x], [y]) for x, y in zip(a, b) if x != y]
    ops = difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()
    return [(a[i1:i2], b[j1:j2]) for tag, i1, i2, j1, j2 in ops if tag != "equal"]


@dataclass(frozen=True)
class TextBudget:
    """Words a perturbation may change (the vision-language convention is 1) and model queries per sample,
    and the words it may not change (``protect``: None = the data's default, see ``attacks.text.validity``)."""

    words: int = 1
    queries: int = 300
    #: candidate texts per model call
    batch_size: int = 32
    #: words no candidate may change (lower case); None: the generated benchmark's vocabulary on its samples,
    #: nothing elsewhere; () nothing anywhere
    protect: tuple[str, ...] | None = None

    @property
    def label(self) -> str:
        return f"words={self.words}"

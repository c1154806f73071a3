"""The text attacks' options: words a perturbation may change, model queries per sample, batch size, and
the words it may not change.

One options class shared by every text recipe and the co-attack's text stage (settings keys
``text_words``, ``text_queries``, ``text_batch``, ``text_protect``).
"""

from __future__ import annotations

from dataclasses import dataclass

from attacks.text.budget import TextBudget
from robustbench_ofa.configcli import opt, positive

#: ``--protect`` value that protects nothing, not even the generated benchmark's vocabulary.
PROTECT_NONE = "none"


def parse_protect(value: str | None) -> tuple[str, ...] | None:
    """None or '' -> None (the data's default); 'none' -> (); 'red, Blue' -> ('red', 'blue')."""
    value = (value or "").strip()
    if not value:
        return None
    if value.lower() == PROTECT_NONE:
        return ()
    return tuple(dict.fromkeys(w.strip().lower() for w in value.split(",") if w.strip()))


def _protect_check(value: str | None) -> str | None:
    expected = "a comma-separated list of single words (or 'none')"
    if value is None:
        return None
    if not isinstance(value, str):
        return expected
    words = parse_protect(value)
    if value.strip() and value.strip().lower() != PROTECT_NONE and not words:
        return expected
    return expected if any(len(w.split()) != 1 for w in words or ()) else None


@dataclass(frozen=True)
class TextOptions:
    words: int = opt(1, flag="--text-words", key="text_words", check=positive,
                     help="text attacks: whitespace words a perturbation may change")
    queries: int = opt(300, flag="--text-queries", key="text_queries", check=positive,
                       help="text attacks: model queries per sample")
    batch: int = opt(32, flag="--text-batch", key="text_batch", check=positive,
                     help="text attacks: candidate texts per model call")
    protect: str | None = opt(None, flag="--protect", key="text_protect", check=_protect_check, type=str,
                       help="text attacks: comma-separated words no candidate may change (default: on the "
                            "generated benchmark its attribute/object/relation/question vocabulary, elsewhere "
                            "none; words replace that default; on closed-answer tasks the question's words "
                            "that are answers of the answer set are added; 'none': nothing at all)")

    def budget(self) -> TextBudget:
        return TextBudget(words=self.words, queries=self.queries, batch_size=self.batch,
                          protect=parse_protect(self.protect))

"""The text attacks' budget: words a perturbation may change, model queries per sample, batch size.

One options class shared by every text recipe and the co-attack's text stage (settings keys
``text_words``, ``text_queries``, ``text_batch``).
"""

from __future__ import annotations

from dataclasses import dataclass

from attacks.text.budget import TextBudget
from robustbench_ofa.configcli import opt, positive


@dataclass(frozen=True)
class TextOptions:
    words: int = opt(1, flag="--text-words", key="text_words", check=positive,
                     help="text attacks: whitespace words a perturbation may change")
    queries: int = opt(300, flag="--text-queries", key="text_queries", check=positive,
                       help="text attacks: model queries per sample")
    batch: int = opt(32, flag="--text-batch", key="text_batch", check=positive,
                     help="text attacks: candidate texts per model call")

    def budget(self) -> TextBudget:
        return TextBudget(words=self.words, queries=self.queries, batch_size=self.batch)

"""How well the validity checks of the word-substitution recipes tell a kept question from a changed one,
measured on hand-labelled pairs (``tests/data/text_validity_pairs.tsv``, see ``tests/data/README.md``),
and the word-sense threshold calibrated on them.

The pairs are split in two halves by their original text (alternately, in order of first appearance), and
the threshold must meet the target on each half separately: how far a threshold picked on some pairs
carries to others is then visible, where one rate over all pairs would flatter it.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from attacks.text import encoder
from attacks.text.resources import TextResources
from attacks.text.validity import checks_for
from robustbench_ofa.data.types import Sample

#: The largest share of changed pairs the default checks may let through (issue 32's "at most 5 %").
MAX_CHANGED = 0.05
#: Thresholds tried, 0.80 to 0.97.
GRID = tuple(round(0.80 + 0.01 * i, 2) for i in range(18))


@dataclass(frozen=True)
class ScoredPair:
    task: str
    source: str
    original: str
    substituted: str
    same: bool
    half: str  # "calibration" or "held-out"
    #: name of the first check before the sense check (antonym, cohyponym, pos) that rejects the pair, or ""
    rejected_by: str
    #: cosine of the two texts' MiniLM embeddings (the sense check compares it with its threshold)
    cosine: float

    def kept(self, threshold: float) -> bool:
        return not self.rejected_by and self.cosine >= threshold


def read_pairs(path: Path) -> list[dict[str, str]]:
    rows = list(csv.DictReader(path.open(), delimiter="\t"))
    for i, row in enumerate(rows, 2):
        if row.get("label") not in ("same", "changed") or not row.get("original") or not row.get("substituted"):
            raise ValueError(f"{path}:{i}: expected original, substituted and label 'same' or 'changed'")
    return rows


def score(rows: Sequence[dict[str, str]], res: TextResources) -> list[ScoredPair]:
    """Each pair through the checks a word-substitution recipe applies on data of no known origin with
    nothing protected (``checks_for``: the same checks, in the same order), the sense check as its cosine."""
    order = list(dict.fromkeys(r["original"] for r in rows))
    half = {text: ("calibration" if i % 2 == 0 else "held-out") for i, text in enumerate(order)}
    cos = (encoder.encode(str(res.minilm), [r["original"] for r in rows])
           * encoder.encode(str(res.minilm), [r["substituted"] for r in rows])).sum(1).tolist()
    out = []
    for r, c in zip(rows, cos):
        o, s = r["original"], r["substituted"]
        sample = Sample(uid="pair", task=r["task"], image=Image.new("RGB", (1, 1)), text=o)
        rules = [check for check in checks_for(sample, (), res, frozenset(), substitutes_words=True)
                 if check.name != "sense"]
        why = next((check.name for check in rules if not check(o, s)), "")
        out.append(ScoredPair(r["task"], r.get("source", ""), o, s, r["label"] == "same", half[o], why, float(c)))
    return out


@dataclass(frozen=True)
class Rates:
    changed_kept: int
    changed: int
    same_rejected: int
    same: int

    @property
    def changed_share(self) -> float:
        return self.changed_kept / max(1, self.changed)

    @property
    def same_rejected_share(self) -> float:
        return self.same_rejected / max(1, self.same)

    def line(self) -> str:
        return (f"changed let through {self.changed_kept}/{self.changed} ({100 * self.changed_share:.1f} %), "
                f"same rejected {self.same_rejected}/{self.same} ({100 * self.same_rejected_share:.1f} %)")


def rates(pairs: Sequence[ScoredPair], threshold: float, half: str | None = None) -> Rates:
    chosen = [p for p in pairs if half is None or p.half == half]
    changed = [p for p in chosen if not p.same]
    same = [p for p in chosen if p.same]
    return Rates(sum(p.kept(threshold) for p in changed), len(changed),
                 sum(not p.kept(threshold) for p in same), len(same))


def calibrate(pairs: Sequence[ScoredPair]) -> float:
    """The lowest threshold of ``GRID`` at which *each* half's changed pairs let through by all the checks
    are at most ``MAX_CHANGED`` (a lower threshold rejects fewer same-meaning pairs). Asking it of each half,
    not of one: on these pairs the threshold one half picks let 11 % through on the other."""
    for t in GRID:
        if all(rates(pairs, t, half).changed_share <= MAX_CHANGED for half in ("calibration", "held-out")):
            return t
    return GRID[-1]

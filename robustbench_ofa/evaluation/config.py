"""Settings of an evaluation run (everything that defines its numbers, stored with the results)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from fractions import Fraction

from attacks import ATTACKS, AttackParams
from robustbench_ofa.errors import RobustOFAError


def _parse_budgets(text: str, what: str, upper: float | None) -> list[tuple[str, float]]:
    """'2/255,4/255' -> [('2/255', 0.0078...), ...] sorted by value; each in [0, upper]."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            value = float(Fraction(part))
        except (ValueError, ZeroDivisionError):
            raise RobustOFAError(f"{what}: {part!r} is not a number or fraction such as 4/255") from None
        if value < 0 or (upper is not None and value > upper):
            bound = f"[0, {upper:g}] (pixel values lie in [0, 1])" if upper is not None else ">= 0"
            raise RobustOFAError(f"{what}: {part} = {value:.4g} is outside {bound}")
        out.append((part, value))
    return sorted(out, key=lambda x: x[1])


def parse_eps_list(text: str, what: str = "--eps") -> list[tuple[str, float]]:
    """L-inf budgets: every value must lie in [0, 1]; at least one."""
    out = _parse_budgets(text, what, 1.0)
    if not out:
        raise RobustOFAError(f"{what}: expected at least one value")
    return out


def parse_l2_list(text: str) -> list[tuple[str, float]]:
    """L2 radii (no upper bound of 1: an L2 ball over a whole image can exceed it)."""
    return _parse_budgets(text, "--eps-l2", None)


@dataclass
class EvalConfig:
    attacks: list[str]
    tasks: list[str] = field(default_factory=lambda: ["grounding", "ve", "vqa", "caption"])
    eps: list[tuple[str, float]] = field(default_factory=lambda: parse_eps_list("1/255,2/255,4/255"))
    eps_l2: list[tuple[str, float]] = field(default_factory=lambda: parse_l2_list("0.5,1.0"))
    params: AttackParams = field(default_factory=AttackParams)
    n_samples: int = 48
    batch_size: int = 16
    seed: int = 0
    device: str = "cpu"
    #: attack only samples every earlier attack (and every smaller eps) failed on
    cascade: bool = True
    transfer: bool = True
    transfer_samples: int = 24
    #: L-inf eps of the gradient-masking sanity check (accuracy should be driven near 0)
    sanity_eps: float = 0.5
    sanity_samples: int = 8
    #: captions: an attack succeeds when CIDEr-D falls below (1 - drop) x the clean CIDEr-D
    caption_drop: float = 0.5
    #: grounding/caption beam at evaluation (attacks judge success with the same decoding)
    beam: int = 3
    n_examples: int = 3

    def validate(self) -> None:
        if not self.attacks:
            raise RobustOFAError("--attack: expected at least one attack name")
        for name in self.attacks:
            ATTACKS.get(name)
        if len(set(self.attacks)) != len(self.attacks):
            raise RobustOFAError("--attack: an attack is listed twice")
        p = self.params
        counts = [("--n-samples", self.n_samples), ("--batch-size", self.batch_size), ("--steps", p.steps)]
        if self.has_text_attacks():
            counts += [("--text-words", p.text_words), ("--text-queries", p.text_queries), ("--text-batch", p.text_batch)]
        for name, value in counts:
            if value < 1:
                raise RobustOFAError(f"{name}: expected a positive integer, got {value}")
        if any(ATTACKS.get(a).norm == "l2" for a in self.attacks) and not self.eps_l2:
            raise RobustOFAError("--eps-l2: an L2 attack was requested but no L2 radius given")
        if self.has_text_attacks():
            if ATTACKS.get(p.co_text).modality != "text":
                raise RobustOFAError(f"--co-text: expected a text attack, got {p.co_text!r}")
            self.co_eps()

    def has_text_attacks(self) -> bool:
        return any(ATTACKS.get(a).modality != "image" for a in self.attacks)

    def text_needs(self) -> set[str]:
        """Offline resources the requested text attacks need (co-attack: those of its text recipe)."""
        names = [self.params.co_text if ATTACKS.get(a).modality == "joint" else a for a in self.attacks
                 if ATTACKS.get(a).modality != "image"]
        return {n for a in names for n in ATTACKS.get(a).needs}

    def co_eps(self) -> tuple[str, float]:
        """The co-attack's image budget as (label, value)."""
        return parse_eps_list(self.params.co_eps, "--co-eps")[0]

    def ladder(self, norm: str) -> list[tuple[str, float]]:
        return self.eps if norm == "linf" else self.eps_l2

    def settings(self) -> dict:
        """What makes two runs comparable (stored in, and checked against, the results store)."""
        d = dataclasses.asdict(self)
        d["eps"] = [e[0] for e in self.eps]
        d["eps_l2"] = [e[0] for e in self.eps_l2]
        d.pop("device")
        if not self.has_text_attacks():  # runs without text attacks keep the settings they always had
            for key in AttackParams.TEXT_FIELDS:
                d["params"].pop(key, None)
        return d

"""Threat models: what an attack may change and how its budget is measured.

The values are the strings stored in results (``results.norm``) and baselines, so a ``Threat`` compares
equal to them and serialises as them; code names the member, never the bare string.
"""

from __future__ import annotations

from enum import Enum
from fractions import Fraction

from robustbench_ofa.errors import RobustOFAError


class Threat(str, Enum):
    #: image within an L-inf ball of radius eps (pixels in [0, 1])
    LINF = "linf"
    #: image within an L2 ball of radius eps
    L2 = "l2"
    #: at most k whitespace words of the task's free text changed, image untouched
    TEXT = "text"
    #: both at once: image within L-inf eps and at most k words
    LINF_TEXT = "linf+text"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def modality(self) -> str:
        """'image', 'text' or 'joint'."""
        return {Threat.TEXT: "text", Threat.LINF_TEXT: "joint"}.get(self, "image")

    @property
    def symbol(self) -> str:
        """How reports print the threat: L∞, L2, text, L∞+text."""
        return {Threat.LINF: "L∞", Threat.L2: "L2", Threat.TEXT: "text", Threat.LINF_TEXT: "L∞+text"}[self]

    @classmethod
    def image(cls) -> tuple[Threat, ...]:
        """The image-only threats, in the order an evaluation runs their budget ladders."""
        return (cls.LINF, cls.L2)

    @classmethod
    def parse(cls, value: str) -> Threat:
        return cls(value)


#: Every threat in report order (clean comes before them in tables).
THREATS: tuple[Threat, ...] = tuple(Threat)


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

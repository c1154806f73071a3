"""The report model's data types: ``Report`` (what every output format renders), ``Threat`` and ``Figure``.

They live apart from ``reports.build`` (which fills a ``Report`` from a results directory) so the
renderers and plots can use them without importing the builder, which imports them in turn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from attacks.threat import Threat as AttackThreat
from reports.headline import Comparison, attack_name
from reports.tables import Table


@dataclass(frozen=True)
class Threat:
    """One column of the comparison: clean inputs, or a norm and budget attacked by ``attacks``."""

    norm: str            # "clean" or an ``attacks.threat.Threat`` value
    eps_label: str
    eps: float
    attacks: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return (self.norm, self.eps_label)

    @property
    def short(self) -> str:
        """Column heading: 'clean', 'L∞ 4/255', 'L2 0.5', 'text words=1'."""
        if self.norm == "clean":
            return "clean"
        return f"{AttackThreat(self.norm).symbol} {self.eps_label}"

    @property
    def phrase(self) -> str:
        """As used in a sentence after 'under': 'PGD at 4/255', 'the worst case of FGSM and PGD at 4/255'."""
        if self.norm == "clean":
            return "clean"
        names = [attack_name(a) for a in self.attacks] or ["attack"]
        who = names[0] if len(names) == 1 else "the worst case of " + ", ".join(names[:-1]) + " and " + names[-1]
        budget = {AttackThreat.LINF: self.eps_label,
                  AttackThreat.TEXT: self.eps_label.replace("words=", "<= ") + " word(s)",
                  AttackThreat.LINF_TEXT: self.eps_label.replace("+words=", " with <= ") + " word(s)"}.get(
            AttackThreat(self.norm), f"L2 radius {self.eps_label}")
        return f"{who} at {budget}"


@dataclass
class Figure:
    """A rendered plot: PNG bytes plus the words around it."""

    key: str
    title: str
    caption: str
    png: bytes

    @property
    def uri(self) -> str:
        import base64

        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")

    @property
    def width_in(self) -> float:
        """Natural width in inches (pixels / dpi), so a small figure is not blown up to the page width."""
        import io

        from PIL import Image

        with Image.open(io.BytesIO(self.png)) as im:
            dpi = im.info.get("dpi", (150, 150))[0] or 150
            return im.width / float(dpi)


@dataclass
class Report:
    """What every output format renders."""

    title: str
    results_dir: Path
    generated: str
    complete: bool
    tasks: list[str]
    variants: list[str]
    variant_meta: dict[str, dict]
    reference: str | None
    threats: dict[str, list[Threat]]
    comparisons: dict[str, list[Comparison]]
    tables: dict[str, pd.DataFrame]
    settings: dict
    run: dict
    flags: pd.DataFrame
    headline: dict[str, list[Comparison]] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    result_tables: list[Table] = field(default_factory=list)
    headline_tables: dict[str, Table] = field(default_factory=dict)
    examples: list = field(default_factory=list)
    text_examples: list = field(default_factory=list)
    metadata: list[tuple[str, str]] = field(default_factory=list)
    variant_table: Table | None = None
    notes: list[str] = field(default_factory=list)
    ablation: pd.DataFrame | None = None
    #: What ``robust-ofa regress`` decided for this run (its ``regression.json``), if it was gated.
    regression: dict | None = None
    regression_tables: list[Table] = field(default_factory=list)
    #: Robust-training sentences (``reports.frontier``): empty unless robust-trained variants were run.
    frontier: list[str] = field(default_factory=list)

    def method(self, variant: str) -> str:
        """The tuning method, labelled "robust-trained" for adversarially trained variants."""
        return method_label(self.variant_meta.get(variant, {}))

    def robust_trained(self, variant: str) -> bool:
        return bool(self.variant_meta.get(variant, {}).get("adversarial"))


def method_label(info: dict) -> str:
    """The tuning method, and for a robust-trained variant how it was trained (reports must say so)."""
    method = str(info.get("method") or "")
    adv = info.get("adversarial") or {}
    if not adv:
        return method
    how = f"{adv.get('method')}, eps {float(adv.get('eps', 0)) * 255:.3g}/255, {adv.get('steps')} steps"
    if "beta" in adv:
        how += f", beta {adv['beta']:g}"
    return f"{method} (robust-trained: {how})"

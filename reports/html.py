"""One self-contained HTML file from the report model (Jinja2, autoescape on, images as data URIs).

The same HTML, under print CSS, becomes the PDF, so both show the same sections. Only the package's own
CSS and JavaScript are marked safe; every string from the data (model names, sample texts, predictions,
adversarial strings) goes through autoescaping, so a sample containing ``<script>`` is shown, not run.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from reports.examples import draws_boxes
from reports.headline import attack_name

if TYPE_CHECKING:
    from reports.model import Report


def _templates_dir():
    return resources.files("reports") / "templates"


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(_templates_dir())), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=False, lstrip_blocks=False)
    env.filters["attack_name"] = attack_name
    return env


def _static(name: str) -> Markup:
    """A package file (CSS/JS) inlined verbatim: trusted, so marked safe."""
    return Markup((_templates_dir() / name).read_text(encoding="utf-8"))


@dataclass
class _Group:
    task: str
    variant: str
    items: list


def _example_groups(report: Report) -> list[_Group]:
    groups: dict[tuple[str, str], _Group] = {}
    for e in report.examples:
        groups.setdefault((e.task, e.variant), _Group(e.task, e.variant, [])).items.append(e)
    return list(groups.values())


def _flag_rows(report: Report) -> list[dict]:
    out = []
    for f in report.flags.itertuples():
        where = " ".join(str(x) for x in (f.variant, f.task, f.norm, f.eps_label) if x)
        out.append({"flag": f.flag, "where": where, "detail": f.detail})
    return out


def _sanity_attacks(report: Report) -> str:
    """The large-eps check's strong attacks as run ('PGD-margin, PGD, 100 steps x 2 restarts')."""
    st = report.settings
    names = ", ".join(str(a) for a in st.get("sanity_attacks", [])) or "none"
    return f"{names}, {st.get('sanity_steps', '?')} steps x {st.get('sanity_restarts', '?')} restarts"


def render(report: Report) -> str:
    """The report as one HTML document (string)."""
    from reports.tables import flags_table
    from robustbench_ofa.evaluation import aggregate as agg

    template = environment().get_template("report.html.j2")
    return template.render(
        r=report, css=_static("report.css"), js=_static("report.js"),
        flag_rows=_flag_rows(report), flags_table=flags_table(report),
        example_groups=_example_groups(report),
        has_boxes=any(draws_boxes(e.task) for e in report.examples),
        thresholds={"vanishing": f"{agg.VANISHING_GRAD:g}",
                    "large_eps": f"{agg.LARGE_EPS_MAX_ACC:.0%} (the 95% Wilson lower bound; worst case of the run's "
                                 "attacks and the strong ones: " + _sanity_attacks(report) + ")",
                    "sanity_eps": f"{report.settings.get('sanity_eps', 0.5):g}",
                    "nondet": f"{agg.NONDETERMINISM_TOL:g}"},
    )

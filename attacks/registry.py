"""The attack registry: one ``AttackSpec`` per attack holds everything the suite knows about it.

An attack is one module (``attacks/image/*.py``, ``attacks/text/recipes/*.py``, ``attacks/text/joint.py``)
that builds its ``AttackSpec`` (runner, display name, threat, white-/black-box, bounded or not, minimum
classes, offline resources, its own options dataclass) and calls :func:`register`. Nothing outside an
attack's module looks at its name: the evaluator, the CLI, the reports and the tests read the spec.

Budgets shared by the iterative attacks (steps, step size, restarts, random start, early stopping) are
``AttackParams``; options of one attack (Square's query budget, C&W's constant, the text attacks' word
budget) are that attack's options dataclass, carried inside ``AttackParams.options``. Settings stored
with a run are flat (``params.queries``, ``params.cw_c``, ...), as they always were: an option's
settings key is its ``key`` metadata.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from attacks.engines import EngineResult
from attacks.threat import Threat
from attacks.views import TaskView
from robustbench_ofa.configcli import cli_fields, opt, positive, step_size
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.registry import Registry

#: ``runner(spec, view, images, eps, params, seeds) -> EngineResult`` (image attacks)
ImageRunner = Callable[["AttackSpec", TaskView, torch.Tensor, float, "AttackParams", list[int]], EngineResult]


@dataclass(frozen=True)
class AttackParams:
    """Budget shared by the iterative attacks, plus each attack's own options (by options class)."""

    steps: int = opt(10, help="iterations of the iterative attacks", check=positive)
    alpha: float | None = opt(None, type=float, help="step size (default 2.5 * eps / steps)", check=step_size)
    restarts: int = opt(1, help="random restarts", check=positive)
    random_start: bool = True
    early_stop: bool = opt(True, help="keep attacking samples already fooled (no early stopping)",
                           flag="--no-early-stop")
    #: options class -> instance, for attacks that have options (missing ones take their defaults)
    options: Mapping[type, Any] = field(default_factory=dict)

    def opt(self, cls: type):
        """The options of one attack (its dataclass's defaults unless given)."""
        return self.options.get(cls) or cls()

    @classmethod
    def of(cls, **flat: Any) -> AttackParams:
        """Build from flat settings keys, e.g. ``AttackParams.of(steps=5, queries=200, text_words=2)``."""
        common = {f.name for f in dataclasses.fields(cls)} - {"options"}
        by_key = {key: (oc, name) for oc in option_classes() for name, key in _keys(oc).items()}
        values: dict[type, dict[str, Any]] = {}
        for key, value in flat.items():
            if key in common:
                continue
            if key not in by_key:
                raise RobustOFAError(f"attack parameter {key!r} is not known; valid: "
                                     f"{', '.join(sorted(common | set(by_key)))}")
            oc, name = by_key[key]
            values.setdefault(oc, {})[name] = value
        return cls(**{k: v for k, v in flat.items() if k in common},
                   options={oc: oc(**kw) for oc, kw in values.items()})

    def replace(self, **common: Any) -> AttackParams:
        return dataclasses.replace(self, **common)

    def settings(self, with_text: bool) -> dict[str, Any]:
        """The flat dict stored with a run: the shared budget, image attacks' options always, text and
        joint attacks' options only when the run has a text attack (runs without keep what they had)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "options"}
        for spec in _specs_with_options():
            if spec.threat.modality != "image" and not with_text:
                continue
            values = self.opt(spec.options)
            for name, key in _keys(spec.options).items():
                out.setdefault(key, getattr(values, name))
        return out


def _keys(options_cls: type) -> dict[str, str]:
    """Field name -> settings key of an options dataclass."""
    return {f.name: f.metadata.get("key") or f.name for f in dataclasses.fields(options_cls)}


@dataclass(frozen=True)
class AttackSpec:
    """Everything about one attack. ``runner``: image attacks (and the joint one); ``recipe``: text
    attacks' TextAttack builder (``attacks.text.engine`` runs it)."""

    name: str
    display: str
    threat: Threat
    kind: str  # "white-box" or "black-box"
    description: str
    runner: ImageRunner | None = None
    recipe: Callable | None = None
    #: False for attacks that search without a budget (C&W): a result outside the ball is not counted
    bounded: bool = True
    min_classes: int = 2
    closed_only: bool = False
    #: offline resources a text attack needs (``attacks.text.resources``)
    needs: tuple[str, ...] = ()
    #: a text attack that swaps whole words (PWWS, TextFooler-GloVe): its candidates also pass the
    #: part-of-speech and word-sense checks (``attacks.text.validity``), which need the tagger and MiniLM
    substitutes_words: bool = False
    #: the attack's own options dataclass (fields declared with ``configcli.opt``), if any
    options: type | None = None
    #: attacks run as a stage of this one (co-attack's text recipe), for resource checks
    stages: Callable[[AttackParams], tuple[str, ...]] | None = None
    #: crafted on other variants of the run (``view.sources``), judged on the attacked one: the
    #: evaluator supplies the sources, and its own transfer test (not the black-box count) flags masking
    needs_sources: bool = False

    @property
    def norm(self) -> Threat:
        return self.threat

    @property
    def modality(self) -> str:
        """'image', 'text' or 'joint'."""
        return self.threat.modality

    @property
    def white_box(self) -> bool:
        return self.kind == "white-box"

    def refusal(self, task) -> str | None:
        """Why this attack cannot run on ``task`` (one line), or None."""
        if self.closed_only and not task.closed_answers:
            return f"attack {self.name!r} applies to closed-answer tasks only, not {task.name!r}"
        if task.num_classes < self.min_classes:
            return (f"attack {self.name!r} needs a task with >= {self.min_classes} answers; "
                    f"{task.name!r} has {task.num_classes}")
        return None

    def check_task(self, task) -> None:
        """Refuse an attack/task pair that cannot work, before any computation."""
        why = self.refusal(task)
        if why:
            raise RobustOFAError(why)


ATTACKS: Registry[AttackSpec] = Registry("attack")


def register(spec: AttackSpec) -> AttackSpec:
    """Register an attack (called once by its module)."""
    if spec.kind not in ("white-box", "black-box"):
        raise ValueError(f"attack {spec.name!r}: kind must be 'white-box' or 'black-box'")
    if spec.threat.modality == "text" and spec.recipe is None:
        raise ValueError(f"text attack {spec.name!r} needs a recipe")
    if spec.threat.modality != "text" and spec.runner is None:
        raise ValueError(f"attack {spec.name!r} needs a runner")
    return ATTACKS.register(spec.name)(spec)


def specs(threat: Threat | None = None, modality: str | None = None) -> list[AttackSpec]:
    """Registered specs (in name order), optionally of one threat or modality."""
    out = [ATTACKS.get(n) for n in ATTACKS]
    return [s for s in out if (threat is None or s.threat is threat) and (modality is None or s.modality == modality)]


def _specs_with_options() -> list[AttackSpec]:
    seen, out = set(), []
    for s in specs():
        if s.options is not None and s.options not in seen:
            seen.add(s.options)
            out.append(s)
    return out


def option_classes() -> list[type]:
    """Every registered attack's options dataclass, once each (CLI options are generated from them)."""
    return [s.options for s in _specs_with_options()]


def option_owner(options_cls: type) -> list[str]:
    return [s.name for s in specs() if s.options is options_cls]


def run_attack(name: str, view: TaskView, images: torch.Tensor, eps: float, params: AttackParams,
               seeds: list[int]) -> EngineResult:
    """Run image attack ``name`` on the view's batch; ``seeds`` are per-sample (random starts, stock RNG)."""
    spec = ATTACKS.get(name)
    if spec.modality != "image":
        raise RobustOFAError(f"attack {name!r} perturbs text: run it through attacks.text, not run_attack")
    spec.check_task(view.task)
    view.set_budget(spec.threat, eps if spec.bounded else None)
    return spec.runner(spec, view, images, eps, params, seeds)


def options_help() -> dict[type, str]:
    """Option group titles for the CLI: which attacks read each options class."""
    return {oc: ", ".join(option_owner(oc)) for oc in option_classes()}


__all__ = ["ATTACKS", "AttackParams", "AttackSpec", "cli_fields", "register", "run_attack", "specs"]

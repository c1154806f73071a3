"""Image attacks by name: what each one is, which tasks it applies to, and how to run it on a batch.

``fgsm``, ``pgd`` and ``pgdl2`` run on the project's early-stopping engines (step-for-step torchattacks'
rules, see ``attacks.engines``); the others are torchattacks' own classes on the task view. An attack
that cannot apply to a task (AutoAttack or a DLR/targeted loss on a task with fewer than 3 answers) is
refused before any work starts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from attacks.engines import EngineResult, run_pgd
from attacks.objective import Objective
from attacks.views import TaskView
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.registry import Registry


@dataclass(frozen=True)
class AttackParams:
    """Budget and settings shared by all attacks (each uses what applies to it)."""

    steps: int = 10
    #: step size; None -> 2.5 * eps / steps (Madry et al.'s rule), or eps for FGSM
    alpha: float | None = None
    restarts: int = 1
    random_start: bool = True
    early_stop: bool = True
    queries: int = 500
    cw_c: float = 1.0
    cw_steps: int = 50
    cw_lr: float = 0.01
    #: text attacks: words a perturbation may change, model queries per sample, candidates per model call
    text_words: int = 1
    text_queries: int = 300
    text_batch: int = 32
    #: co-attack: image L-inf budget (a fraction, as on the command line) and the text recipe of its stage 1
    co_eps: str = "2/255"
    co_text: str = "pwws"

    #: fields that only text attacks read (left out of a run's stored settings when it has none)
    TEXT_FIELDS = ("text_words", "text_queries", "text_batch", "co_eps", "co_text")


@dataclass(frozen=True)
class AttackSpec:
    name: str
    norm: str  # "linf" or "l2"
    kind: str  # "white-box" or "black-box"
    description: str
    min_classes: int = 2
    closed_only: bool = False
    #: offline resources a text attack needs (``attacks.text.resources``)
    needs: tuple[str, ...] = ()

    @property
    def modality(self) -> str:
        """'image', 'text' (norm 'text') or 'joint' (norm 'linf+text')."""
        return {"text": "text", "linf+text": "joint"}.get(self.norm, "image")

    def check_task(self, task) -> None:
        """Refuse an attack/task pair that cannot work, before any computation."""
        if self.closed_only and not task.closed_answers:
            raise RobustOFAError(f"attack {self.name!r} applies to closed-answer tasks (ve, vqa) only, not {task.name!r}")
        n = len(task.answers) if task.closed_answers else 2
        if n < self.min_classes:
            raise RobustOFAError(
                f"attack {self.name!r} needs a task with >= {self.min_classes} answers; {task.name!r} has {n}"
            )


ATTACKS: Registry[AttackSpec] = Registry("attack")
_RUNNERS: dict[str, Callable[[AttackSpec, TaskView, torch.Tensor, float, AttackParams, list[int]], EngineResult]] = {}


def _register(spec: AttackSpec, runner) -> None:
    ATTACKS.register(spec.name)(spec)
    _RUNNERS[spec.name] = runner


def run_attack(name: str, view: TaskView, images: torch.Tensor, eps: float, params: AttackParams,
               seeds: list[int]) -> EngineResult:
    """Run attack ``name`` on the view's batch; ``seeds`` are per-sample (random starts, stock RNG)."""
    spec = ATTACKS.get(name)
    if spec.modality != "image":
        raise RobustOFAError(f"attack {name!r} perturbs text: run it through attacks.text, not run_attack")
    spec.check_task(view.task)
    view.set_budget(spec.norm, None if name == "cw" else eps)
    return _RUNNERS[name](spec, view, images, eps, params, seeds)


def _alpha(params: AttackParams, eps: float) -> float:
    return params.alpha if params.alpha is not None else 2.5 * eps / params.steps


def _own(norm: str, single_step: bool = False):
    def runner(spec, view, images, eps, params, seeds):
        objective = Objective(view)
        if single_step:
            return run_pgd(objective, images, eps, eps, 1, norm, random_start=False,
                           early_stop=False, seeds=seeds)
        best = None
        for restart in range(max(1, params.restarts)):
            res = run_pgd(objective, images, eps, _alpha(params, eps), params.steps, norm,
                          params.random_start, params.early_stop, [s + 7919 * restart for s in seeds])
            best = res if best is None else _keep_fooled(view, best, res)
        return best

    return runner


def _keep_fooled(view: TaskView, a: EngineResult, b: EngineResult) -> EngineResult:
    """Across restarts keep, per sample, an image that fools the model if either restart found one."""
    with torch.no_grad():
        preds = view.task.predict(view.model, view.batch, images=a.adv)
    fooled = torch.tensor([not p.correct for p in preds], device=a.adv.device)
    adv = torch.where(fooled[:, None, None, None], a.adv, b.adv)
    return EngineResult(adv, a.stopped | b.stopped, a.first_grad)


def _stock(build):
    def runner(spec, view, images, eps, params, seeds):
        torch.manual_seed(int(seeds[0]) if seeds else 0)
        attack = build(view, eps, params, int(seeds[0]) if seeds else 0)
        adv = attack(images, view.labels())
        return EngineResult(adv.detach(), torch.zeros(len(images), dtype=torch.bool),
                            torch.full((len(images),), float("nan")))

    return runner


def _apgd(loss: str):
    def build(view, eps, params, seed):
        import torchattacks

        return torchattacks.APGD(view, norm="Linf", eps=eps, steps=params.steps, n_restarts=params.restarts,
                                 seed=seed, loss=loss)

    return build


def _apgdt(view, eps, params, seed):
    import torchattacks

    return torchattacks.APGDT(view, norm="Linf", eps=eps, steps=params.steps, n_restarts=params.restarts,
                              seed=seed, n_classes=view.num_classes)


def _autoattack(view, eps, params, seed):
    import torchattacks

    return torchattacks.AutoAttack(view, norm="Linf", eps=eps, version="standard", n_classes=view.num_classes,
                                   seed=seed)


def _cw(view, eps, params, seed):
    import torchattacks

    return torchattacks.CW(view, c=params.cw_c, steps=params.cw_steps, lr=params.cw_lr)


def _square(view, eps, params, seed):
    import torchattacks

    return torchattacks.Square(view, norm="Linf", eps=eps, n_queries=params.queries, n_restarts=params.restarts,
                               seed=seed)


_register(AttackSpec("fgsm", "linf", "white-box", "FGSM (Goodfellow et al.), one signed-gradient step"),
          _own("linf", single_step=True))
_register(AttackSpec("pgd", "linf", "white-box", "PGD L-inf (Madry et al.), early stopping"), _own("linf"))
_register(AttackSpec("pgdl2", "l2", "white-box", "PGD L2 (Madry et al.), early stopping"), _own("l2"))
_register(AttackSpec("apgd-ce", "linf", "white-box", "APGD with cross-entropy (Croce & Hein)"), _stock(_apgd("ce")))
_register(AttackSpec("apgd-dlr", "linf", "white-box", "APGD with the DLR loss", min_classes=3),
          _stock(_apgd("dlr")))
_register(AttackSpec("apgd-t", "linf", "white-box", "targeted APGD-DLR over the top classes", min_classes=3),
          _stock(_apgdt))
_register(AttackSpec("autoattack", "linf", "white-box", "AutoAttack standard (APGD-CE, APGD-T, FAB-T, Square)",
                     min_classes=3, closed_only=True), _stock(_autoattack))
_register(AttackSpec("cw", "l2", "white-box", "Carlini-Wagner L2; success counted within the L2 eps"),
          _stock(_cw))
_register(AttackSpec("square", "linf", "black-box", "Square attack, score-based black-box"), _stock(_square))


def _register_text() -> None:
    """Text recipes (norm 'text', budget in words) and the joint co-attack; run by ``attacks.text``."""
    from attacks.text.catalog import CO_ATTACK, TEXT_RECIPES

    for info in TEXT_RECIPES.values():
        ATTACKS.register(info.name)(AttackSpec(info.name, "text", "black-box", info.description, needs=info.needs))
    ATTACKS.register(CO_ATTACK)(AttackSpec(
        CO_ATTACK, "linf+text", "white-box",
        "Co-Attack: text attack (--co-text, default pwws) then image PGD conditioned on the adversarial text"))


_register_text()

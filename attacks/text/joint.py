"""Co-Attack (Zhang et al. 2022) on OFA: perturb the text first, then the image conditioned on that text.

Stage 1 runs a text recipe (default PWWS, 1 word) on each sample. Stage 2 runs PGD (L-inf, default
2/255, 10 steps, the project's early-stopping engine) on the image with the adversarial text in the
source, for the samples stage 1 did not already fool; the image loss is the task loss of the image
attacks (answer-set cross-entropy, or the reference sequence's NLL), which plays the role of Co-Attack's
embedding-divergence loss for a model whose output is a decoded sequence rather than an embedding. The
joint threat model is "<= words changed AND image within eps", so image-only attacks at eps' <= eps and
text-only attacks at words' <= words are contained in it (the evaluator folds them into its worst case).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from attacks.engines import EngineResult
from attacks.registry import ATTACKS, AttackParams, AttackSpec, register, run_attack, specs
from attacks.text.budget import TextBudget
from attacks.text.engine import TextOutcome, run_text_attack
from attacks.text.options import TextOptions
from attacks.text.queries import source_ids
from attacks.threat import Threat, parse_eps_list
from attacks.views import TaskView
from robustbench_ofa.configcli import opt
from robustbench_ofa.tasks.base import Task, TaskBatch

#: The image attack of stage 2.
IMAGE_STAGE = "pgd"


def _eps_check(value: str) -> str | None:
    parse_eps_list(value, "--co-eps")  # raises its own one-line error
    return None


def _text_check(value: str) -> str | None:
    return None if ATTACKS.get(value).modality == "text" else "a text attack"


@dataclass(frozen=True)
class CoAttackOptions:
    eps: str = opt("2/255", flag="--co-eps", key="co_eps", check=_eps_check,
                   help="co-attack: L-inf image budget of its PGD stage")
    text: str = opt("pwws", flag="--co-text", key="co_text", check=_text_check,
                    choices=lambda: [s.name for s in specs(modality="text")],
                    help="co-attack: text attack of its first stage")

    def image_budget(self) -> tuple[str, float]:
        """The image budget as (label, value)."""
        return parse_eps_list(self.eps, "--co-eps")[0]


@dataclass
class JointResult:
    texts: list[TextOutcome]
    adv_images: torch.Tensor
    #: source ids of the adversarial texts (what the model reads with ``adv_images``)
    input_ids: torch.Tensor
    grad_evals: torch.Tensor
    first_grad: torch.Tensor


def run_co_attack(model, task: Task, batch: TaskBatch, text_recipe: str, budget: TextBudget, eps: float,
                  params: AttackParams, seeds: Sequence[int], clean_scores: Sequence[float] | None = None,
                  caption_drop: float = 0.5) -> JointResult:
    samples = batch.samples
    texts = run_text_attack(text_recipe, model, task, samples, batch.images, budget, seeds, clean_scores,
                            caption_drop)
    ids = source_ids(task, samples, [t.adversarial for t in texts]).to(batch.images.device)
    adv = batch.images.clone()
    grad_evals = torch.zeros(len(samples), dtype=torch.long)
    first_grad = torch.full((len(samples),), float("nan"))
    rows = [i for i, t in enumerate(texts) if t.status != "successful"]
    if rows and eps > 0:
        idx = torch.tensor(rows, dtype=torch.long)
        sub = TaskBatch([samples[i] for i in rows], ids[idx], batch.images[idx], batch.targets[idx])
        view = TaskView(model, task, sub)
        res: EngineResult = run_attack(IMAGE_STAGE, view, sub.images, eps, params, [int(seeds[i]) for i in rows])
        adv[idx] = res.adv
        grad_evals[idx] = view.counters.grad
        first_grad[idx] = res.first_grad
    return JointResult(texts, adv.detach(), ids, grad_evals, first_grad)


def _runner(model, task: Task, batch: TaskBatch, eps: float, params: AttackParams, seeds: Sequence[int],
            clean_scores: Sequence[float] | None = None, caption_drop: float = 0.5) -> JointResult:
    """The registered runner: both stages with the run's options."""
    return run_co_attack(model, task, batch, params.opt(CoAttackOptions).text, params.opt(TextOptions).budget(),
                         eps, params, seeds, clean_scores, caption_drop)


register(AttackSpec(
    "co-attack", "Co-Attack", Threat.LINF_TEXT, "white-box",
    "Co-Attack: text attack (--co-text, default pwws) then image PGD conditioned on the adversarial text",
    runner=_runner, options=CoAttackOptions, stages=lambda params: (params.opt(CoAttackOptions).text,)))

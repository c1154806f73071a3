"""TrainConfig: every knob of one training run, as a plain dataclass that round-trips through JSON.

Why one dataclass: a checkpoint records the config it was written under, and a resumed run refuses a
checkpoint written under a different config (resuming with another learning rate or batch size would not
reproduce the uninterrupted run). Cards and ablation tables store the same dict.

Defaults follow OFA's finetuning recipes where they carry over to small models: AdamW (betas 0.9/0.999,
eps 1e-8), linear warm-up over 6 % of the steps then linear decay, label smoothing 0.1, gradient
clipping at 1.0, weight decay 0.01. bf16 autocast is used only on CUDA (``bf16=None`` means "on when
the device is cuda"); CPU training stays in fp32 so CPU builds are bit-reproducible.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from robustbench_ofa.configcli import (
    check_values,
    count,
    fraction,
    non_negative,
    one_of,
    opt,
    optional,
    positive,
    positive_number,
    unit_interval,
)
from robustbench_ofa.errors import RobustOFAError

DECAYS = ("linear", "cosine", "constant")
MIXES = ("alternate", "sum")
#: Adversarial training (``training.adversarial``): none, PGD-AT (Madry et al.), TRADES (Zhang et al.),
#: FGSM with a random start (Wong et al., "Fast is better than free").
ADV_METHODS = ("none", "pgd", "trades", "fgsm-rs")
#: The adversarial settings, stored only when ``adv`` is not "none" (so standard runs, their resume keys
#: and the zoo recipes' hashes are what they were before adversarial training existed).
ADV_FIELDS = ("adv", "adv_eps", "adv_steps", "adv_alpha", "adv_ratio", "adv_beta", "adv_text")
#: How a step is executed, not what it computes: the split of the global batch into micro-batches and
#: the recomputation of activations. Never stored with the recipe (``to_dict``), so neither the zoo's
#: hashes, a card's ``train`` nor a checkpoint's resume key depends on them; a card records them under
#: ``execution`` with the world size (``training.parallel``).
EXECUTION_FIELDS = ("micro_batch_size", "activation_checkpointing")


def _budget(text: str) -> float:
    """An L-inf budget such as ``4/255`` or ``0.0157``."""
    from attacks.threat import parse_eps_list

    return parse_eps_list(text, "--adv-eps")[0][1]


def _adv_eps(value: Any) -> str | None:
    return None if isinstance(value, (int, float)) and 0 < value <= 1 else "an L-inf budget in (0, 1], e.g. 4/255"


@dataclass
class TrainConfig:
    """Hyper-parameters and bookkeeping intervals of one training run.

    Fields declared with ``opt`` are ``robust-ofa train``'s options (help, default and check written once
    here); ``cli=False`` fields are checked the same way but set only from code or a config file.
    """

    lr: float = opt(1e-3, help="peak learning rate", check=positive_number)
    #: Warm-up steps; ``None`` uses ``warmup_ratio`` of the total steps (OFA: 0.06).
    warmup_steps: int | None = opt(None, cli=False, help="warm-up steps (None: warmup_ratio of all steps)",
                                   check=optional(count))
    warmup_ratio: float = opt(0.06, help="warm-up steps as a share of all steps", check=fraction)
    decay: str = opt("linear", help="learning-rate decay after warm-up", choices=lambda: DECAYS,
                     check=one_of(DECAYS))
    #: Floor of the decayed learning rate, as a fraction of ``lr``.
    min_lr_ratio: float = opt(0.0, cli=False, help="floor of the decayed lr, as a share of lr", check=unit_interval)
    weight_decay: float = opt(0.01, help="AdamW weight decay", check=non_negative)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    label_smoothing: float = opt(0.1, help="label smoothing of the targets", check=fraction)
    #: Gradient-norm clip; 0 disables clipping.
    clip_norm: float = opt(1.0, aliases=("--clip",), help="gradient-norm clip (0: off)", check=non_negative)
    batch_size: int = opt(32, help="samples per optimiser step: the global batch, over every process and "
                                   "micro-batch (the recipe)", check=positive)
    #: Samples per forward pass per process; the step accumulates batch / (micro-batch x world size)
    #: micro-batches (``training.parallel.StepSplit``). ``None``: the whole share of each process at once.
    micro_batch_size: int | None = opt(None, type=int, check=optional(positive),
                                       help="samples per forward pass per process (gradient accumulation: "
                                            "batch / (micro-batch x processes) steps; default: no accumulation)")
    activation_checkpointing: bool = opt(False, help="recompute each encoder/decoder layer and ResNet stage "
                                                     "in the backward pass (less memory for one more forward "
                                                     "pass of them; the same weights)")
    #: Total optimiser steps; if ``None``, ``epochs`` passes over the training data.
    max_steps: int | None = opt(None, type=int, flag="--steps", aliases=("--max-steps",), help="optimiser steps",
                                check=optional(positive))
    epochs: float | None = opt(None, type=float, help="passes over the data (instead of --steps)",
                               check=optional(positive_number))
    #: Multi-task batching: "alternate" (each step one task's batch) or "sum" (each step one batch of
    #: every task, gradients summed, as in OFA's multi-task pretraining).
    mix: str = opt("alternate", help="multi-task batching: alternate (one task per step) or sum (all, summed)",
                   choices=lambda: MIXES, check=one_of(MIXES))
    seed: int = opt(0, help="seed of initialisation, data order and dropout")
    device: str = opt("cpu", help="cpu, cuda, cuda:1, ... (bf16 autocast on CUDA)")
    #: bf16 autocast; ``None`` = on when ``device`` is CUDA (never on CPU: it would break bit-reproducibility).
    bf16: bool | None = None
    #: Torch intra-op threads for the run (``None`` leaves torch's setting alone).
    num_threads: int | None = opt(None, type=int, flag="--threads", aliases=("--num-threads",),
                                  help="torch CPU threads", check=optional(positive))
    eval_batch_size: int = opt(64, cli=False, help="samples per evaluation batch", check=positive)
    #: Evaluate on the eval data every this many steps (0 = only at the end).
    eval_every: int = opt(0, help="evaluate every N steps (0: only at the end)", check=count)
    log_every: int = opt(10, help="log every N steps", check=count)
    #: Write a resumable checkpoint every this many steps (0 = never, so no resume either).
    checkpoint_every: int = opt(0, help="write a resumable checkpoint every N steps (0: never)", check=count)
    #: Adversarial training: each step's batch (a share ``adv_ratio`` of it) is attacked first by the
    #: evaluation's own L-inf engine and objective (``attacks.engines.run_pgd`` on a ``TaskView``).
    adv: str = opt("none", help="adversarial training: pgd (PGD-AT), trades (TRADES), fgsm-rs (FGSM with a "
                                "random start) or none", choices=lambda: ADV_METHODS, check=one_of(ADV_METHODS))
    adv_eps: float = opt(4 / 255, parse=_budget, text="4/255", check=_adv_eps,
                         help="L-inf budget of the training attack (e.g. 4/255)")
    adv_steps: int = opt(3, help="steps of the training attack (pgd, trades; fgsm-rs takes 1)", check=positive)
    adv_alpha: float | None = opt(None, type=float, check=optional(positive_number),
                                  help="step size of the training attack (default: 2.5 eps / steps for pgd and "
                                       "trades, 1.25 eps for fgsm-rs)")
    adv_ratio: float = opt(1.0, check=lambda v: None if isinstance(v, (int, float)) and 0 < v <= 1
                           else "a share in (0, 1]", help="share of each batch that is attacked")
    adv_beta: float = opt(6.0, check=non_negative, help="TRADES: weight of the robustness (KL) term")
    #: Words of the question the training attack may also perturb (typos, worst of a few candidates,
    #: before the image attack: ``training.adv_text``); 0: images only.
    adv_text: int = opt(0, check=count, help="also perturb up to N words of each attacked sample's text (typos "
                                             "that keep the answer; worst of 4 candidates), before the image "
                                             "attack")

    def __post_init__(self) -> None:
        if isinstance(self.betas, list):
            self.betas = tuple(self.betas)
        self.validate()

    def validate(self) -> None:
        """Reject impossible settings with one-line errors naming the field (the checks are the fields')."""
        check_values(type(self), {f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
                     label=lambda f: f"training config field '{f.name}'", show=repr)
        if self.max_steps is None and self.epochs is None:
            raise RobustOFAError("training config: set 'max_steps' or 'epochs'")
        if self.adv == "none":  # an adversarial setting without --adv would be silently ignored
            fields = {f.name: f for f in dataclasses.fields(self)}
            changed = [k for k in ADV_FIELDS[1:] if getattr(self, k) != fields[k].default]
            if changed:
                raise RobustOFAError(f"training config field '{changed[0]}': applies only with adversarial "
                                     f"training (--adv pgd|trades|fgsm-rs)")

    @property
    def use_bf16(self) -> bool:
        """Whether autocast to bf16 is on (auto: only on CUDA)."""
        if self.bf16 is None:
            return str(self.device).startswith("cuda")
        return bool(self.bf16) and str(self.device).startswith("cuda")

    def total_steps(self, steps_per_epoch: int) -> int:
        """Optimiser steps of the run given the data's batches per epoch."""
        if self.max_steps is not None:
            return self.max_steps
        return max(1, round(float(self.epochs) * steps_per_epoch))

    def warmup(self, total: int) -> int:
        return self.warmup_steps if self.warmup_steps is not None else int(round(self.warmup_ratio * total))

    def to_dict(self) -> dict[str, Any]:
        """The recipe: every field that changes the trained weights or is stored with them (execution
        fields left out)."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        for k in EXECUTION_FIELDS:
            d.pop(k)
        if self.adv == "none":
            for k in ADV_FIELDS:
                d.pop(k)
        elif not self.adv_text:  # image-only adversarial runs keep the keys they had before --adv-text
            d.pop("adv_text")
        return d

    @property
    def adv_step_size(self) -> float:
        """The training attack's step: ``adv_alpha``, else 2.5 eps / steps (PGD, TRADES) or 1.25 eps (FGSM-RS)."""
        if self.adv_alpha is not None:
            return self.adv_alpha
        return 1.25 * self.adv_eps if self.adv == "fgsm-rs" else 2.5 * self.adv_eps / self.adv_steps

    def adversarial(self) -> dict[str, Any] | None:
        """What cards and reports show of the adversarial training (None for standard training)."""
        if self.adv == "none":
            return None
        steps = 1 if self.adv == "fgsm-rs" else self.adv_steps
        out = {"method": self.adv, "eps": self.adv_eps, "steps": steps, "alpha": self.adv_step_size,
               "ratio": self.adv_ratio}
        if self.adv == "trades":
            out["beta"] = self.adv_beta
        if self.adv_text:
            from robustbench_ofa.training.adv_text import CANDIDATES

            out["text_words"] = self.adv_text
            out["text_candidates"] = CANDIDATES
        return out

    def resume_key(self) -> dict[str, Any]:
        """The fields that change the trained weights (bookkeeping intervals and eval settings excluded)."""
        d = self.to_dict()
        for k in ("eval_batch_size", "eval_every", "log_every", "checkpoint_every", "num_threads"):
            d.pop(k)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "training config") -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise RobustOFAError(f"{where}: unknown field '{unknown[0]}'; valid: {', '.join(sorted(names))}")
        return cls(**data)

    def execution(self) -> dict[str, Any]:
        """The execution fields (what ``to_dict`` leaves out)."""
        return {k: getattr(self, k) for k in EXECUTION_FIELDS}

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

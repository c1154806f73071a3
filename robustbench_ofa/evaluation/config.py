"""Settings of an evaluation run (everything that defines its numbers, stored with the results).

``EvalConfig``'s fields declared with ``configcli.opt`` are ``robust-ofa evaluate``'s options: their
defaults, help and checks live here once, and the command line is generated from them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from attacks import ATTACKS, AttackParams, Threat, specs
from attacks.text.joint import CoAttackOptions
from attacks.text.options import TextOptions
from attacks.threat import parse_eps_list, parse_l2_list
from robustbench_ofa.configcli import one_of, opt, positive, validate
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.tasks import task_names

__all__ = ["ADAPTIVE_ATTACKS", "DEFAULT_EPS", "DEFAULT_EPS_L2", "OWN_INHERITANCE", "PROTOCOLS", "SANITY_ATTACKS",
           "TWIN_TRANSFER", "EvalConfig", "own_white_box",
           "parse_attack_list", "parse_eps_list", "parse_l2_list"]

#: Chosen so that the default run answers its question on the embedded zoo (README, "Defaults"): the
#: finetuned model falls by more than half at 16/255 (grounding, VQA) or 64/255 (VE), where the old
#: 1/255-4/255 ladder left VE and VQA curves flat; the cascade and early stopping make the large budgets
#: cheap (only survivors are attacked, and most fall in the first steps).
DEFAULT_EPS = "4/255,16/255,64/255"
DEFAULT_EPS_L2 = "0.5,1.0"
#: ``standard``: the run's attacks only; ``strong``: also the adaptive set (below) on the L-inf ladder, then
#: ``TWIN_TRANSFER`` (images crafted on each variant's standard and finetuned twins), all in the cascade.
PROTOCOLS = ("standard", "strong")
#: Arithmetic of the attacks' forward/backward passes (``evaluation.precision``).
PRECISIONS = ("fp32", "tf32", "bf16")
#: The adaptive attacks of ``--protocol strong`` (Carlini et al.'s checklist; ADAPT 2024 for prompt tuning):
#: a non-saturating margin loss, targeted CE over the wrong answers, EOT over the tuning method's dropout.
ADAPTIVE_ATTACKS = ("pgd-margin", "pgd-targeted", "eot-pgd")
#: The strong protocol's transfer attack, last in its L-inf cascade (``attacks.image.transfer``).
TWIN_TRANSFER = "twin-transfer"
#: The strong attacks of the large-eps sanity check, each run only on the samples still robust.
SANITY_ATTACKS = ("pgd-margin", "pgd")


#: How the run's own white-box attacks inherit under ``--protocol strong`` (stored in its settings, so a
#: store written under an older rule, where they also inherited what the protocol's additions fooled, is
#: refused on resume rather than finished under a mixed rule).
OWN_INHERITANCE = "own-white-box-only"


def own_white_box(attacks: list[str]) -> list[str]:
    """The run's own white-box attacks (named with ``--attack``): under ``--protocol strong`` they go first
    in the cascade and on an image ladder inherit only what they themselves fooled at a smaller budget
    (``Evaluator._attack_unit``), so their rows alone are the worst case before the protocol's additions
    (adaptive attacks, the twin transfer) and the run's black-box attacks (``reports.frontier`` compares
    the two). One definition for both sides."""
    return [a for a in attacks if a in ATTACKS and ATTACKS.get(a).white_box]


def _answers_check(value: str | None) -> None:
    """An answer file is read when the config is checked, so a bad one is refused before any work."""
    if value is not None:
        from robustbench_ofa.tasks.answers import load_answers

        load_answers(value)


def parse_attack_list(text: str) -> list[str]:
    """'pgd, square' -> ['pgd', 'square'] (names are checked by ``EvalConfig.validate``)."""
    return [a.strip() for a in text.split(",") if a.strip()]


@dataclass
class EvalConfig:
    attacks: list[str] = opt(flag="--attack", parse=parse_attack_list, choices=lambda: ATTACKS.names(),
                             help="comma-separated attacks")
    tasks: list[str] = field(default_factory=lambda: list(task_names()))
    eps: list[tuple[str, float]] = opt(default_factory=lambda: parse_eps_list(DEFAULT_EPS), parse=parse_eps_list,
                                       text=DEFAULT_EPS, help="L-inf budgets (a sweep), in [0, 1] pixel units")
    eps_l2: list[tuple[str, float]] = opt(default_factory=lambda: parse_l2_list(DEFAULT_EPS_L2), parse=parse_l2_list,
                                          text=DEFAULT_EPS_L2, help="L2 budgets of the L2 attacks (pgdl2, cw)")
    params: AttackParams = field(default_factory=AttackParams)
    #: 96 rather than 48: twice the discordant pairs for McNemar's test between two variants, and a 95 %
    #: interval of +-10 instead of +-14 points at 50 % (README, "Defaults"); measured 248 s against 222 s
    #: for the old 48-sample 1/255-4/255 run on the embedded zoo.
    n_samples: int = opt(96, help="samples per task", check=positive)
    batch_size: int = opt(16, help="samples per attacked batch", check=positive)
    seed: int = opt(0, help="seed of every per-sample random choice")
    device: str = opt("cpu", help="torch device")
    precision: str = opt("fp32", check=one_of(PRECISIONS), choices=lambda: PRECISIONS,
                         help="arithmetic of the attacks' forward/backward passes (tf32: CUDA only; bf16: "
                              "autocast). The adversarial image and its updates stay fp32 and inside the "
                              "budget; clean and adversarial predictions are always judged in fp32")
    compile: bool = opt(False, help="torch.compile the encoder and decoder for the attacks' passes (predictions "
                                    "are still judged eagerly); on an H200 a compiled bf16 step ran 1.9x the "
                                    "eager one (README, GPU check); first calls compile for minutes")
    #: attack only samples every earlier attack (and every smaller eps) failed on
    cascade: bool = opt(True, help="run every attack on every clean-correct sample (no cascade)")
    transfer: bool = opt(True, help="skip the transfer matrix")
    transfer_samples: int = 24
    protocol: str = opt("standard", check=one_of(PROTOCOLS), choices=lambda: PROTOCOLS,
                        help="strong: also run the adaptive attacks (" + ", ".join(ADAPTIVE_ATTACKS) + ") on "
                             "the L-inf budgets, then images crafted on each variant's standard and "
                             "finetuned twins (twin-transfer), all cascaded into the worst case")
    #: The large-eps (gradient-masking) sanity check: per sample, the worst case over the run's image
    #: attacks at every budget whose ball lies inside the L-inf ball of ``sanity_eps`` and over
    #: ``sanity_attacks`` at ``sanity_eps`` (each ``sanity_steps`` steps x ``sanity_restarts`` restarts,
    #: early stopping, only on the samples still robust), on up to ``sanity_samples`` clean-correct samples;
    #: accuracy should be driven near 0 (the flag rule is in ``aggregate``).
    sanity_eps: float = 0.5
    sanity_samples: int = opt(64, help="clean-correct samples of the large-eps (gradient-masking) check",
                              check=positive)
    sanity_attacks: list[str] = field(default_factory=lambda: list(SANITY_ATTACKS))
    sanity_steps: int = opt(100, help="steps of each attack of the large-eps check", check=positive)
    sanity_restarts: int = opt(2, help="restarts of each attack of the large-eps check", check=positive)
    #: captions: an attack succeeds when CIDEr-D falls below (1 - drop) x the clean CIDEr-D
    caption_drop: float = 0.5
    #: grounding/caption beam at evaluation (attacks judge success with the same decoding)
    beam: int = opt(3, help="beam size of grounding and caption decoding (attacks judge success with the same "
                            "decoding; OFA's evaluation scripts use 5)", check=positive)
    #: adversarial examples stored per (variant, task, attack, budget): its first attacked samples
    n_examples: int = 3
    #: VQA-like tasks (``Task.open_answer_set``): one answer set for every variant; default: the set each
    #: variant was tuned with (its card), else the task's own.
    answers: str | None = opt(None, type=str, check=lambda v: _answers_check(v),
                              help="answer set of VQA-like tasks for every variant: .txt (one per line), .json list "
                                   "or OFA's trainval_ans2label.pkl (default: the set each variant was tuned with, "
                                   "else the task's)")

    def validate(self) -> None:
        """Every check the command line would make, also for configs built in code."""
        if not self.attacks:
            raise RobustOFAError("--attack: expected at least one attack name")
        for name in self.attacks:
            ATTACKS.get(name)
        if len(set(self.attacks)) != len(self.attacks):
            raise RobustOFAError("--attack: an attack is listed twice")
        validate(self)
        validate(self.params)
        for spec in specs():  # image attacks' options are always checked (and stored), text ones with text
            if spec.options is not None and (spec.modality == "image" or self.has_text_attacks()):
                validate(self.params.opt(spec.options))
        if any(s.threat is Threat.L2 for s in self.specs()) and not self.eps_l2:
            raise RobustOFAError("--eps-l2: an L2 attack was requested but no L2 radius given")
        for name in self.sanity_attacks:
            if ATTACKS.get(name).threat is not Threat.LINF:
                raise RobustOFAError(f"sanity_attacks: {name!r} is not an L-inf image attack")
            if ATTACKS.get(name).needs_sources:
                raise RobustOFAError(f"sanity_attacks: {name!r} crafts its images on other variants (twins); "
                                     f"the large-eps check attacks the variant itself")
        if self.precision == "tf32" and not self.device.startswith("cuda"):
            raise RobustOFAError(f"--precision tf32: TF32 exists on CUDA devices only (--device is {self.device})")
        if self.sanity_steps < 1 or self.sanity_restarts < 1 or self.sanity_samples < 1:
            raise RobustOFAError("sanity_steps, sanity_restarts, sanity_samples: expected positive integers")
        if self.compile:  # before the zoo is built or the store opened (which clears a finished run's files)
            from robustbench_ofa.evaluation.precision import check_compile

            check_compile()

    def specs(self):
        return [ATTACKS.get(a) for a in self.attacks]

    def has_text_attacks(self) -> bool:
        return any(s.modality != "image" for s in self.specs())

    def text_needs(self) -> set[str]:
        """Offline resources the requested text attacks need (a joint attack: those of its stages)."""
        names = []
        for spec in self.specs():
            if spec.modality != "image":
                names += list(spec.stages(self.params)) if spec.stages else [spec.name]
        return {n for a in names for n in ATTACKS.get(a).needs}

    @property
    def text(self) -> TextOptions:
        """The text attacks' budget (words, queries, batch)."""
        return self.params.opt(TextOptions)

    def co_eps(self) -> tuple[str, float]:
        """The co-attack's image budget as (label, value)."""
        return self.params.opt(CoAttackOptions).image_budget()

    def ladder(self, threat: Threat) -> list[tuple[str, float]]:
        return self.eps if threat is Threat.LINF else self.eps_l2

    def image_attacks(self, threat: Threat) -> list[str]:
        """The image attacks run on ``threat``'s budget ladder, in cascade order: the run's as given; with
        ``protocol`` strong (L-inf) the adaptive set not already listed goes after the run's white-box
        attacks and before its black-box ones, so "a black-box attack fooled what every white-box attack
        missed" still holds, and the twin transfer goes last (a variant without a twin in the run skips
        it: ``Evaluator``)."""
        names = [a for a in self.attacks if ATTACKS.get(a).threat is threat]
        if self.protocol != "strong" or threat is not Threat.LINF:
            return names
        extra = [a for a in ADAPTIVE_ATTACKS if a not in names and ATTACKS.get(a).threat is threat]
        white = [a for a in names if ATTACKS.get(a).white_box]
        black = [a for a in names if not ATTACKS.get(a).white_box and a != TWIN_TRANSFER]
        return white + extra + black + [TWIN_TRANSFER]

    def settings(self) -> dict:
        """What makes two runs comparable (stored in, and checked against, the results store)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["eps"] = [e[0] for e in self.eps]
        d["eps_l2"] = [e[0] for e in self.eps_l2]
        d["params"] = self.params.settings(with_text=self.has_text_attacks())
        d.pop("device")
        if self.protocol == "standard":  # the default: stored settings (and baselines) stay as they were
            d.pop("protocol")
        else:
            d["own_inheritance"] = OWN_INHERITANCE
        if self.precision == "fp32":  # likewise
            d.pop("precision")
        if not self.compile:  # likewise
            d.pop("compile")
        if self.answers is None:  # likewise
            d.pop("answers")
        else:  # the file's content decides the numbers: a resume with an edited file is refused
            from robustbench_ofa.models.loading import file_sha256

            d["answers"] = {"file": str(self.answers), "sha256": file_sha256(self.answers)}
        return d

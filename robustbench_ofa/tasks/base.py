"""The task interface: how one OFA task turns samples into model inputs, targets and judgements.

Training, evaluation and attacks all go through a ``Task`` so that "what counts as correct" is
defined once per task. Images travel as [0, 1] pixels; OFA's normalisation (mean = std = 0.5) is
applied inside ``Task.encode``, so attacks perturb and clip in pixel space.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from robustbench_ofa.data.fields import TsvRow
from robustbench_ofa.data.transforms import ImageTransform, normalize
from robustbench_ofa.data.types import Sample
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.models.generation import sequence_nll
from robustbench_ofa.models.instructions import DEFAULT_MAX_WORDS
from robustbench_ofa.models.modeling import OFAEncoderOutput, OFAModel
from robustbench_ofa.models.tokenizer import OFATokenizer
from robustbench_ofa.registry import Registry

TASK_REGISTRY: Registry[type[Task]] = Registry("task")


@dataclass
class TaskBatch:
    """A collated batch: source ids, [0, 1] images and teacher-forcing targets (ending in eos)."""

    samples: list[Sample]
    input_ids: torch.Tensor
    images: torch.Tensor
    targets: torch.Tensor

    def to(self, device: str | torch.device) -> TaskBatch:
        return TaskBatch(self.samples, self.input_ids.to(device), self.images.to(device), self.targets.to(device))

    def __len__(self) -> int:
        return len(self.samples)


@dataclass
class Prediction:
    """One prediction: ``value`` (box, label or text), its metric ``score`` and whether it is ``correct``."""

    value: Any
    score: float
    correct: bool
    extra: dict = field(default_factory=dict)


class Task:
    """Base class; subclasses define targets, prediction and correctness for one OFA task.

    Everything that differs between tasks lives on the task class (metrics, the adversarial-success rule,
    the in-loop "fooled" check, what a text attack perturbs and reads back, how reports draw outputs), so
    training, evaluation, attacks and reports never branch on a task's name. A new task is one module in
    this package that subclasses ``Task`` (or ``ClosedAnswerTask``) and registers itself.
    """

    name: ClassVar[str]
    #: True when answers come from a fixed candidate set (scored as (N, C) logits by attacks).
    closed_answers: ClassVar[bool] = False
    #: A closed answer set that depends on the data (VQA), taken from ``--answers`` or the training data
    #: and stored with the variant (``tasks.answers``); False for fixed sets (VE) and open outputs.
    open_answer_set: ClassVar[bool] = False
    max_target_len: ClassVar[int] = 20
    #: the metric that ranks checkpoints and headlines a task (a key of ``metrics``)
    main_metric: ClassVar[str] = "accuracy"
    #: attacks can tell from one forward pass that a sample is fooled (``fooled``); otherwise it is judged
    #: only after the attack (decoding a caption at every step would cost more than the step itself)
    checks_in_loop: ClassVar[bool] = False
    #: what a prediction is: "label", "box" or "text" (reports draw "box" outputs on the image)
    output_kind: ClassVar[str] = "text"
    #: other names the task answers to (OFA's dataset names: ``refcoco``, ``snli_ve``)
    aliases: ClassVar[tuple[str, ...]] = ()
    #: the task's prompt can hold a premise (OFA's ``--add-caption`` for SNLI-VE)
    uses_premise: ClassVar[bool] = False
    #: the JSONL manifest keys the task reads (``data.manifest``); other keys go to ``Sample.meta``
    manifest_fields: ClassVar[tuple[str, ...]] = ()
    #: OFA's released TSV layout of the task (name, columns in file order) or None (``data.tsv``), the
    #: columns it cannot do without (besides ``uniq_id`` and ``image``) and those it reads when present
    tsv_layout: ClassVar[tuple[str, tuple[str, ...]] | None] = None
    tsv_required: ClassVar[tuple[str, ...]] = ()
    tsv_optional: ClassVar[tuple[str, ...]] = ()

    def __init__(self, tokenizer: OFATokenizer, image_size: int, max_image_size: int | None = None,
                 beam: int = 5, max_source_len: int = 80):
        if image_size % 16:
            raise RobustOFAError(f"image_size: expected a multiple of 16, got {image_size}")
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.max_image_size = max_image_size or image_size
        self.beam = beam
        self.max_source_len = max_source_len
        self.transform = ImageTransform(image_size)

    # -- the task's text format and records (no tokenizer needed) ----------------------------------
    @classmethod
    def prompt(cls, text: str = "", premise: str | None = None, max_words: int = DEFAULT_MAX_WORDS) -> str:
        """OFA's source prompt for this task (``models.instructions`` has the templates and text clean-up)."""
        raise NotImplementedError

    @classmethod
    def answer_text(cls, answer: str, max_words: int | None = None) -> str:
        """Decoder target text as OFA builds it: ``" {answer}"`` (leading space, like the prompts)."""
        return " " + answer

    @classmethod
    def reference_text(cls, sample: Sample) -> str:
        """The sample's training target as text (what reports show as its reference)."""
        return ""

    @classmethod
    def read_manifest_fields(cls, sample: Sample, obj: dict, where: str) -> None:
        """Copy and check the task's own fields from one manifest line's JSON object into ``sample``."""
        raise NotImplementedError(f"task {cls.name!r} reads no manifest fields")

    @classmethod
    def manifest_record(cls, sample: Sample) -> dict:
        """The task's manifest fields of ``sample`` (the inverse of ``read_manifest_fields``)."""
        raise NotImplementedError(f"task {cls.name!r} writes no manifest fields")

    @classmethod
    def read_tsv_row(cls, sample: Sample, row: TsvRow) -> None:
        """Fill ``sample`` from one TSV row of the task's layout (``row.text``/``row.optional`` cells)."""
        raise NotImplementedError(f"task {cls.name!r} reads no TSV rows")

    # -- inputs ------------------------------------------------------------------------------------
    def source_text(self, sample: Sample, text: str | None = None) -> str:
        """OFA's instruction for the sample (``text`` replaces the sample's free text, for text attacks)."""
        return instruction(self.name, sample.text if text is None else text, sample.premise)

    def target_ids(self, sample: Sample) -> list[int]:
        """Target token ids without bos/eos."""
        raise NotImplementedError

    def collate(self, samples: list[Sample], texts: list[str] | None = None) -> TaskBatch:
        """Tokenise, transform and pad a list of samples (``texts`` overrides their free texts)."""
        sources = [self.source_text(s, None if texts is None else texts[i]) for i, s in enumerate(samples)]
        ids, _ = self.tokenizer.encode_batch(sources, max_length=self.max_source_len)
        images = torch.stack([self.transform(s.image) for s in samples])
        rows = [self.target_ids(s)[: self.max_target_len] + [self.tokenizer.eos_token_id] for s in samples]
        targets, _ = self.tokenizer.pad_batch(rows)
        return TaskBatch(samples, ids, images, targets)

    def target_tokens(self, samples: list[Sample]) -> int:
        """The non-pad target tokens (with EOS) ``collate`` gives ``samples``, without building their images:
        what a split training step normalises every micro-batch's loss by, known before any of them runs."""
        return sum(len(self.target_ids(s)[: self.max_target_len]) + 1 for s in samples)

    def prepare(self, samples: list[Sample]) -> None:
        """Per-evaluation-set state (captioning's CIDEr-D corpus); called before predictions on ``samples``."""

    @staticmethod
    def encode(model: OFAModel, input_ids: torch.Tensor, images: torch.Tensor) -> OFAEncoderOutput:
        """Run the encoder on [0, 1] images (normalised here, inside the differentiable graph)."""
        return model.encode(input_ids, normalize(images))

    # -- losses ------------------------------------------------------------------------------------
    def loss(self, model: OFAModel, batch: TaskBatch, images: torch.Tensor | None = None,
             label_smoothing: float = 0.0) -> torch.Tensor:
        """Per-sample summed NLL of the batch's targets (training and sequence-loss attacks)."""
        enc = self.encode(model, batch.input_ids, batch.images if images is None else images)
        return sequence_nll(model, enc, batch.targets, label_smoothing)

    # -- the attack's view: an (N, C)-logit classifier --------------------------------------------
    @property
    def num_classes(self) -> int:
        """Classes of the attack view: the answer set, or 2 (``[-NLL, 0]``) for sequence outputs."""
        return 2

    def attack_labels(self, samples: list[Sample]) -> torch.Tensor:
        """The class each sample must keep: class 0 (the reference output) for sequence tasks."""
        return torch.zeros(len(samples), dtype=torch.long)

    def attack_logits(self, model: OFAModel, input_ids: torch.Tensor, images: torch.Tensor,
                      targets: torch.Tensor, samples: list[Sample] | None = None,
                      labels: torch.Tensor | None = None,
                      need_fooled: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(N, C) logits an attack maximises cross-entropy on, and (if asked and possible) which rows are
        fooled by ``images`` already, from the same forward pass.

        Sequence tasks: logits ``[-NLL, 0]`` of the reference ``targets``; cross-entropy on class 0 is then
        ``softplus(NLL)``, a strictly increasing function of the sequence loss.
        """
        enc = self.encode(model, input_ids, images)
        nll = sequence_nll(model, enc, targets)
        logits = torch.stack([-nll, torch.zeros_like(nll)], dim=1)
        fooled = self.fooled(model, enc, samples) if need_fooled and self.checks_in_loop else None
        return logits, fooled

    @torch.no_grad()
    def fooled(self, model: OFAModel, enc: OFAEncoderOutput, samples: list[Sample]) -> torch.Tensor:
        """Which samples the encoder outputs ``enc`` already get wrong (tasks with ``checks_in_loop``)."""
        raise NotImplementedError(f"{self.name}: no in-loop fooled check")

    # -- predictions -------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, model: OFAModel, batch: TaskBatch, images: torch.Tensor | None = None) -> list[Prediction]:
        raise NotImplementedError

    def judge(self, value: Any, sample: Sample) -> Prediction:
        """Score a prediction value against the sample's reference."""
        raise NotImplementedError

    def adversarial_correct(self, pred: Prediction, clean_score: float, drop: float) -> bool:
        """Whether an adversarial prediction still counts as correct (the attack failed).

        Default: the task's own judgement. ``drop`` is the relative score drop that makes a graded output
        (a caption) count as broken; tasks with a yes/no judgement ignore it.
        """
        return bool(pred.correct)

    def metrics(self, preds: list[Prediction], samples: list[Sample]) -> dict[str, float]:
        """Clean metrics over a data set (fractions); must contain ``main_metric``."""
        return {"accuracy": sum(p.correct for p in preds) / len(preds)}

    def describe(self, value: Any) -> str:
        """A short string of a prediction for the results store and reports."""
        return str(value)

    # -- text attacks ------------------------------------------------------------------------------
    def attacked_text(self, sample: Sample) -> str:
        """The text a text attack perturbs (the task's free text; the instruction template stays)."""
        return sample.text

    def attacked_source(self, sample: Sample, text: str) -> str:
        """The model's source text with ``text`` in place of ``attacked_text(sample)``."""
        return self.source_text(sample, text)

    @torch.no_grad()
    def text_outputs(self, model: OFAModel, enc: OFAEncoderOutput, samples: list[Sample]) -> list:
        """One model output per row of ``enc`` for text-attack queries (closed tasks: answer scores)."""
        raise NotImplementedError

    def output_value(self, output: Any) -> Any:
        """The prediction value inside a ``text_outputs`` item (what ``judge`` takes)."""
        return output

    def text_goal(self, output: Any, sample: Sample, clean_score: float, drop: float) -> tuple[bool, float]:
        """(success, score) of a text-attack candidate's output: success is ``adversarial_correct``'s
        negation, so what the search counts as adversarial the evaluator counts so too; the score ranks
        candidates (higher is closer to success)."""
        pred = self.judge(self.output_value(output), sample)
        return not self.adversarial_correct(pred, clean_score, drop), 1.0 - float(pred.score)


def get_task(name: str, tokenizer: OFATokenizer, image_size: int, **kwargs) -> Task:
    return task_class(name)(tokenizer, image_size, **kwargs)


def task_names() -> tuple[str, ...]:
    """The registered tasks in registration order (grounding, ve, vqa, caption for the built-in ones)."""
    return tuple(TASK_REGISTRY.in_order())


def task_classes() -> dict[str, type[Task]]:
    return {name: TASK_REGISTRY.get(name) for name in task_names()}


def canonical_task(name: str) -> str:
    """``name`` as a registered task name (aliases such as ``refcoco``/``snli_ve`` accepted, any case)."""
    key = name.strip().lower()
    for task, cls in task_classes().items():
        if key == task or key in cls.aliases:
            return task
    raise RobustOFAError(f"unknown task '{name}': expected one of {', '.join(task_names())}")


def is_task_name(name: str) -> bool:
    try:
        canonical_task(name)
    except RobustOFAError:
        return False
    return True


def task_class(name: str) -> type[Task]:
    return TASK_REGISTRY.get(canonical_task(name))


def instruction(task: str, text: str = "", premise: str | None = None, max_words: int = DEFAULT_MAX_WORDS) -> str:
    """OFA's source prompt for ``task`` (by name or alias); starts with a space, ready for the tokenizer."""
    cls = task_class(task)
    if premise is not None and not cls.uses_premise:
        raise RobustOFAError(f"instruction: a premise is not used by the '{cls.name}' task")
    return cls.prompt(text, premise, max_words)


def target_text(task: str, answer: str, max_words: int | None = None) -> str:
    """Decoder target text of ``task`` as OFA builds it (grounding's targets are bins, so it refuses)."""
    return task_class(task).answer_text(answer, max_words)

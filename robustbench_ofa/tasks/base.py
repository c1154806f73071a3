"""The task interface: how one OFA task turns samples into model inputs, targets and judgements.

Training, evaluation and attacks all go through a ``Task`` so that "what counts as correct" is
defined once per task. Images travel as [0, 1] pixels; OFA's normalisation (mean = std = 0.5) is
applied inside ``Task.encode``, so attacks perturb and clip in pixel space.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from robustbench_ofa.data.transforms import ImageTransform, normalize
from robustbench_ofa.data.types import Sample
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.models.generation import sequence_nll
from robustbench_ofa.models.instructions import instruction
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
    """Base class; subclasses define targets, prediction and correctness for one OFA task."""

    name: ClassVar[str]
    #: True when answers come from a fixed candidate set (scored as (N, C) logits by attacks).
    closed_answers: ClassVar[bool] = False
    max_target_len: ClassVar[int] = 20

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

    # -- predictions -------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, model: OFAModel, batch: TaskBatch, images: torch.Tensor | None = None) -> list[Prediction]:
        raise NotImplementedError

    def judge(self, value: Any, sample: Sample) -> Prediction:
        """Score a prediction value against the sample's reference."""
        raise NotImplementedError

    def describe(self, value: Any) -> str:
        """A short string of a prediction for the results store and reports."""
        return str(value)


def get_task(name: str, tokenizer: OFATokenizer, image_size: int, **kwargs) -> Task:
    return TASK_REGISTRY.get(name)(tokenizer, image_size, **kwargs)

"""Scoring candidate texts of one sample through OFA: batched, with the image encoded once, and cached.

A text attack asks for the model's output on hundreds of variants of one sentence, all with the same
image. OFA's encoder is joint over image patches and text tokens, so the transformer must run per
candidate, but the ResNet and the patch projection (``OFAModel.embed_image``) need not: they run once per
sample and their output is reused for every candidate. Candidates are scored in batches, and a text
already scored is answered from a cache (TextAttack's own cache lives in each goal function; this one
also serves the co-attack's second stage and the final judgement).

What a "model output" is depends on the task:
  * ve / vqa: the (C,) answer-set scores (sequence log-likelihoods, the logits the image attacks see);
  * grounding: the decoded box (original-image pixels) and the NLL of the reference box tokens;
  * caption: the decoded caption.

Captioning has no free text: its whole input text is OFA's fixed prompt, so there the prompt is what a
text attack perturbs (``attack_text``). Every other task perturbs only its free text (expression,
hypothesis, question) and keeps the instruction template.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from robustbench_ofa.data.transforms import normalize
from robustbench_ofa.data.types import Sample
from robustbench_ofa.models.generation import score_candidates, sequence_nll
from robustbench_ofa.models.instructions import CAPTION_PROMPT
from robustbench_ofa.tasks.base import Task


def attack_text(task: Task, sample: Sample) -> str:
    """The text a text attack perturbs for this sample."""
    return CAPTION_PROMPT.strip() if task.name == "caption" else sample.text


def source_text(task: Task, sample: Sample, text: str) -> str:
    """The model's source text with ``text`` in place of the attacked text (template kept)."""
    return " " + text if task.name == "caption" else task.source_text(sample, text)


def source_ids(task: Task, samples: Sequence[Sample], texts: Sequence[str]) -> torch.Tensor:
    """Padded source ids of ``samples`` with their attacked texts replaced by ``texts``."""
    sources = [source_text(task, s, t) for s, t in zip(samples, texts)]
    ids, _ = task.tokenizer.encode_batch(sources, max_length=task.max_source_len)
    return ids


@dataclass
class GroundingOutput:
    box: tuple[float, float, float, float]
    nll: float


class SampleQueries:
    """Model outputs for candidate texts of one sample (one image), batched and cached."""

    def __init__(self, model, task: Task, sample: Sample, image: torch.Tensor, batch_size: int = 32):
        self.model = model
        self.task = task
        self.sample = sample
        self.image = image  # (C, H, W) in [0, 1]
        self.batch_size = max(1, int(batch_size))
        self.cache: dict[str, object] = {}
        #: texts actually run through the model (cache misses)
        self.evaluations = 0
        self._features: tuple[torch.Tensor, torch.Tensor] | None = None
        self._target: torch.Tensor | None = None

    @property
    def features(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._features is None:
            with torch.no_grad():
                self._features = self.model.embed_image(normalize(self.image[None]))
        return self._features

    def outputs(self, texts: Sequence[str]) -> list:
        """One output per text, in order (duplicates and earlier texts come from the cache)."""
        todo = list(dict.fromkeys(t for t in texts if t not in self.cache))
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start:start + self.batch_size]
            for text, out in zip(chunk, self._run(chunk)):
                self.cache[text] = out
            self.evaluations += len(chunk)
        return [self.cache[t] for t in texts]

    @torch.no_grad()
    def _run(self, texts: list[str]) -> list:
        task, model = self.task, self.model
        ids = source_ids(task, [self.sample] * len(texts), texts).to(self.image.device)
        enc = model.encode(ids, image_features=self.features)
        if task.closed_answers:
            return list(score_candidates(model, enc, task.candidates).float().cpu())
        if task.name == "grounding":
            boxes = task.decode_boxes(model, enc, [self.sample] * len(texts))
            nll = sequence_nll(model, enc, self.reference_target().expand(len(texts), -1))
            return [GroundingOutput(b, float(n)) for b, n in zip(boxes, nll)]
        return task.decode_captions(model, enc)

    def reference_target(self) -> torch.Tensor:
        """(1, T) reference box tokens + eos (grounding)."""
        if self._target is None:
            row = self.task.target_ids(self.sample)[: self.task.max_target_len] + [self.task.tokenizer.eos_token_id]
            self._target = torch.tensor([row], dtype=torch.long, device=self.image.device)
        return self._target


class UnbatchedQueries(SampleQueries):
    """The reference path: every text on its own, image re-encoded each time, no cache (what a plain
    TextAttack ``ModelWrapper`` around OFA does). Used by the benchmark as the baseline."""

    def outputs(self, texts: Sequence[str]) -> list:
        out = []
        for text in texts:
            self._features = None
            out.extend(self._run([text]))
            self.evaluations += 1
        return out

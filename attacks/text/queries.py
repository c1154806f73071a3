"""Scoring candidate texts of one sample through OFA: batched, with the image encoded once, and cached.

A text attack asks for the model's output on hundreds of variants of one sentence, all with the same
image. OFA's encoder is joint over image patches and text tokens, so the transformer must run per
candidate, but the ResNet and the patch projection (``OFAModel.embed_image``) need not: they run once per
sample and their output is reused for every candidate. Candidates are scored in batches, and a text
already scored is answered from a cache (TextAttack's own cache lives in each goal function; this one
also serves the co-attack's second stage and the final judgement).

What a "model output" is, and which text is perturbed, the task says (``Task.text_outputs``,
``Task.attacked_text``): closed-answer tasks give their (C,) answer-set scores (the logits the image
attacks see), grounding its decoded box and the reference box's NLL, captioning its decoded caption
(captioning has no free text, so its fixed prompt is what is perturbed). Every other task perturbs only
its free text (expression, hypothesis, question) and keeps the instruction template.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from robustbench_ofa.data.transforms import normalize
from robustbench_ofa.data.types import Sample
from robustbench_ofa.tasks.base import Task


def attack_text(task: Task, sample: Sample) -> str:
    """The text a text attack perturbs for this sample."""
    return task.attacked_text(sample)


def source_text(task: Task, sample: Sample, text: str) -> str:
    """The model's source text with ``text`` in place of the attacked text (template kept)."""
    return task.attacked_source(sample, text)


def source_ids(task: Task, samples: Sequence[Sample], texts: Sequence[str]) -> torch.Tensor:
    """Padded source ids of ``samples`` with their attacked texts replaced by ``texts``."""
    sources = [source_text(task, s, t) for s, t in zip(samples, texts)]
    ids, _ = task.tokenizer.encode_batch(sources, max_length=task.max_source_len)
    return ids


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
        samples = [self.sample] * len(texts)
        ids = source_ids(self.task, samples, texts).to(self.image.device)
        enc = self.model.encode(ids, image_features=self.features)
        return self.task.text_outputs(self.model, enc, samples)


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

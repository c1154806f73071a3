"""Closed-answer tasks (visual entailment, VQA): answers scored as a (N, C) set of logits.

Prediction is the candidate with the highest sequence log-likelihood; the same differentiable scores
are what torchattacks sees as a classifier's logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from robustbench_ofa.data.types import VE_LABELS, Sample
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.metrics import normalize_vqa_answer, vqa_accuracy
from robustbench_ofa.models.generation import score_candidates
from robustbench_ofa.models.instructions import target_text, ve_answer
from robustbench_ofa.tasks.base import TASK_REGISTRY, Prediction, Task, TaskBatch


class ClosedAnswerTask(Task):
    closed_answers = True

    def __init__(self, tokenizer, image_size, answers: Sequence[str] | None = None, **kwargs):
        super().__init__(tokenizer, image_size, **kwargs)
        self.answers = list(answers if answers is not None else self.default_answers())
        if len(set(self.answers)) != len(self.answers) or not self.answers:
            raise RobustOFAError(f"{self.name}: the answer set must be non-empty and without duplicates")
        self._index = {a: i for i, a in enumerate(self.answers)}
        self.candidates = [self.tokenizer.encode(target_text(self.name, a), add_special_tokens=False)
                           for a in self.answers]

    def default_answers(self) -> list[str]:
        raise RobustOFAError(f"{self.name}: an answer set is required")

    def answer_of(self, sample: Sample) -> str:
        raise NotImplementedError

    def label_index(self, sample: Sample) -> int:
        answer = self.answer_of(sample)
        if answer not in self._index:
            raise RobustOFAError(f"sample {sample.uid}: answer {answer!r} is not in the {self.name} answer set")
        return self._index[answer]

    def labels(self, samples: Sequence[Sample]) -> torch.Tensor:
        return torch.tensor([self.label_index(s) for s in samples], dtype=torch.long)

    def target_ids(self, sample: Sample) -> list[int]:
        return self.candidates[self.label_index(sample)]

    def logits(self, model, input_ids: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """(N, C) answer-set scores (sequence log-likelihoods); differentiable w.r.t. ``images``."""
        return score_candidates(model, self.encode(model, input_ids, images), self.candidates)

    @torch.no_grad()
    def predict(self, model, batch: TaskBatch, images: torch.Tensor | None = None) -> list[Prediction]:
        scores = self.logits(model, batch.input_ids, batch.images if images is None else images)
        return [self.judge(self.answers[int(i)], s) for i, s in zip(scores.argmax(-1), batch.samples)]


@TASK_REGISTRY.register("ve")
class VisualEntailment(ClosedAnswerTask):
    name = "ve"

    def default_answers(self) -> list[str]:
        return list(VE_LABELS)

    def answer_of(self, sample: Sample) -> str:
        return ve_answer(sample.label or "")

    def judge(self, value, sample) -> Prediction:
        ok = value == self.answer_of(sample)
        return Prediction(value, float(ok), ok)


@TASK_REGISTRY.register("vqa")
class VQA(ClosedAnswerTask):
    """VQA over a closed answer set; a prediction is correct when its VQA accuracy is >= 0.5."""

    name = "vqa"

    def default_answers(self) -> list[str]:
        from robustbench_ofa.data.synthetic import VQA_ANSWERS

        return list(VQA_ANSWERS)

    def answer_of(self, sample: Sample) -> str:
        return sample.target_text

    def label_index(self, sample: Sample) -> int:
        answer = self.answer_of(sample)
        if answer in self._index:
            return self._index[answer]
        norm = normalize_vqa_answer(answer)
        for i, a in enumerate(self.answers):
            if normalize_vqa_answer(a) == norm:
                return i
        raise RobustOFAError(f"sample {sample.uid}: answer {answer!r} is not in the vqa answer set")

    def judge(self, value, sample) -> Prediction:
        acc = vqa_accuracy(value, sample.answers or [self.answer_of(sample)])
        return Prediction(value, acc, acc >= 0.5)

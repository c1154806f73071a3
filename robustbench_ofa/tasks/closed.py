"""Closed-answer tasks (visual entailment, VQA): answers scored as a (N, C) set of logits.

Prediction is the candidate with the highest sequence log-likelihood; the same differentiable scores
are what torchattacks sees as a classifier's logits.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch

from robustbench_ofa.data.fields import (
    VE_LABEL_MAP,
    field_error,
    json_choice,
    json_score_map,
    json_string,
    json_string_list,
    parse_ve_label,
    parse_vqa_ref,
    show_value,
)
from robustbench_ofa.data.types import VE_LABELS, Sample
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.metrics import VQA_ANSWER_METRICS, normalize_vqa_answer, vqa_credit
from robustbench_ofa.models.generation import score_candidates
from robustbench_ofa.models.instructions import (
    DEFAULT_MAX_WORDS,
    VE_PREMISE_TEMPLATE,
    VE_TEMPLATE,
    VQA_TEMPLATE,
    pre_caption,
    pre_question,
    ve_answer,
)
from robustbench_ofa.tasks.base import TASK_REGISTRY, Prediction, Task, TaskBatch


class ClosedAnswerTask(Task):
    closed_answers = True
    checks_in_loop = True
    output_kind = "label"

    def __init__(self, tokenizer, image_size, answers: Sequence[str] | None = None, **kwargs):
        super().__init__(tokenizer, image_size, **kwargs)
        self.answers = list(answers if answers is not None else self.default_answers())
        if len(set(self.answers)) != len(self.answers) or not self.answers:
            raise RobustOFAError(f"{self.name}: the answer set must be non-empty and without duplicates")
        self._index = {a: i for i, a in enumerate(self.answers)}
        self.candidates = [self.tokenizer.encode(self.answer_text(a), add_special_tokens=False)
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

    def answerable(self, sample: Sample) -> bool:
        """Whether any answer the sample counts as right is in the answer set (else it is always wrong)."""
        try:
            self.label_index(sample)
        except RobustOFAError:
            return False
        return True

    #: Evaluation sets this: a sample none of whose answers is in the set (always wrong, and reported as
    #: such) gets answer 0 as a stand-in target, so batches that hold it still collate. Training keeps the
    #: default, where such a sample is an error (``robust-ofa train`` leaves them out and says so).
    stand_in_for_unanswerable = False

    def _target_index(self, sample: Sample) -> int:
        try:
            return self.label_index(sample)
        except RobustOFAError:
            if self.stand_in_for_unanswerable:
                return 0
            raise

    def labels(self, samples: Sequence[Sample]) -> torch.Tensor:
        return torch.tensor([self._target_index(s) for s in samples], dtype=torch.long)

    def target_ids(self, sample: Sample) -> list[int]:
        return self.candidates[self._target_index(sample)]

    def logits(self, model, input_ids: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """(N, C) answer-set scores (sequence log-likelihoods); differentiable w.r.t. ``images``."""
        return score_candidates(model, self.encode(model, input_ids, images), self.candidates)

    @property
    def num_classes(self) -> int:
        return len(self.answers)

    def attack_labels(self, samples: Sequence[Sample]) -> torch.Tensor:
        return self.labels(samples)

    def attack_logits(self, model, input_ids, images, targets, samples=None, labels=None, need_fooled=False):
        """The answer-set scores are the logits; fooled = the argmax left the true answer."""
        logits = self.logits(model, input_ids, images)
        fooled = logits.detach().argmax(-1).ne(labels) if need_fooled else None
        return logits, fooled

    @torch.no_grad()
    def text_outputs(self, model, enc, samples) -> list:
        return list(score_candidates(model, enc, self.candidates).float().cpu())

    @torch.no_grad()
    def predict(self, model, batch: TaskBatch, images: torch.Tensor | None = None) -> list[Prediction]:
        scores = self.logits(model, batch.input_ids, batch.images if images is None else images)
        return [self.judge(self.answers[int(i)], s) for i, s in zip(scores.argmax(-1), batch.samples)]


@TASK_REGISTRY.register("ve")
class VisualEntailment(ClosedAnswerTask):
    name = "ve"
    aliases = ("snli_ve", "visual_entailment")
    uses_premise = True
    manifest_fields = ("hypothesis", "premise", "label")
    tsv_layout = ("snli_ve", ("uniq_id", "image_id", "image", "hypothesis", "caption", "label"))
    tsv_required = ("hypothesis", "label")
    tsv_optional = ("caption",)  # the premise (OFA's --add-caption)

    @classmethod
    def prompt(cls, text="", premise=None, max_words=DEFAULT_MAX_WORDS) -> str:
        hypothesis = pre_caption(text, max_words)
        if premise is None:
            return VE_TEMPLATE.format(hypothesis)
        return VE_PREMISE_TEMPLATE.format(pre_caption(premise, max_words), hypothesis)

    @classmethod
    def answer_text(cls, answer, max_words=None) -> str:
        return " " + ve_answer(answer)

    @classmethod
    def reference_text(cls, sample) -> str:
        return sample.label or ""

    @classmethod
    def read_manifest_fields(cls, sample, obj, where) -> None:
        sample.text = json_string(obj, "hypothesis", where)
        sample.premise = json_string(obj, "premise", where, required=False)
        raw = json_string(obj, "label", where)
        sample.label = VE_LABEL_MAP.get(raw.lower())
        if sample.label is None:
            raise field_error(
                where, "label", "one of yes/no/maybe or entailment/contradiction/neutral", show_value(raw)
            )

    @classmethod
    def manifest_record(cls, sample) -> dict:
        if sample.label not in VE_LABELS:
            raise RobustOFAError(
                f"sample '{sample.uid}': field 'label': expected yes/no/maybe, got {sample.label!r}"
            )
        fields: dict = {"hypothesis": sample.text}
        if sample.premise is not None:
            fields["premise"] = sample.premise
        fields["label"] = sample.label
        return fields

    @classmethod
    def read_tsv_row(cls, sample, row) -> None:
        sample.text = row.text("hypothesis")
        sample.premise = row.optional("caption")
        sample.label = parse_ve_label(row.text("label"), where=row.where)

    def default_answers(self) -> list[str]:
        return list(VE_LABELS)

    def answer_of(self, sample: Sample) -> str:
        return ve_answer(sample.label or "")

    def judge(self, value, sample) -> Prediction:
        ok = value == self.answer_of(sample)
        return Prediction(value, float(ok), ok)


@TASK_REGISTRY.register("vqa")
class VQA(ClosedAnswerTask):
    """VQA over a closed answer set, scored by the rule ``metrics.vqa_answer_metric`` picks per sample.

    Consensus min(#matches / 3, 1) for VQAv2-style samples (>= 3 human answers), OFA's stored soft score
    for samples from its TSVs (``meta["answer_scores"]``), normalised exact match for fewer answers, or
    the rule the data names (``meta["answer_metric"]``). Correct at a credit >= 0.5 (``metrics.vqa_credit``).
    """

    name = "vqa"
    main_metric = "vqa_accuracy"
    open_answer_set = True
    manifest_fields = ("question", "answers", "answer", "answer_metric", "answer_scores")
    tsv_layout = ("vqa", ("uniq_id", "image_id", "question", "ref", "predict_objects", "image"))
    tsv_required = ("question", "ref")

    @classmethod
    def prompt(cls, text="", premise=None, max_words=DEFAULT_MAX_WORDS) -> str:
        question = pre_question(text, max_words)
        return VQA_TEMPLATE.format(question if question.endswith("?") else question + "?")

    @classmethod
    def reference_text(cls, sample) -> str:
        if sample.label:
            return sample.label
        return sample.answers[0] if sample.answers else ""

    @classmethod
    def read_manifest_fields(cls, sample, obj, where) -> None:
        sample.text = json_string(obj, "question", where)
        sample.answers = json_string_list(obj, "answers", where)
        sample.label = json_string(obj, "answer", where, required=False)
        metric = json_choice(obj, "answer_metric", where, VQA_ANSWER_METRICS)
        if metric is not None:
            sample.meta["answer_metric"] = metric
        scores = json_score_map(obj, "answer_scores", where)
        if scores is not None:
            sample.meta["answer_scores"] = scores

    @classmethod
    def manifest_record(cls, sample) -> dict:
        fields = {"question": sample.text, "answers": list(sample.answers)}
        if sample.label:
            fields["answer"] = sample.label
        for key in ("answer_metric", "answer_scores"):
            if sample.meta.get(key) is not None:
                fields[key] = sample.meta[key]
        return fields

    @classmethod
    def read_tsv_row(cls, sample, row) -> None:
        sample.text = row.text("question")
        scores, sample.answers = parse_vqa_ref(row.text("ref"), where=row.where)
        sample.label = sample.answers[0]
        sample.meta["answer_scores"] = scores

    def default_answers(self) -> list[str]:
        from robustbench_ofa.data.synthetic import VQA_ANSWERS

        return list(VQA_ANSWERS)

    def answer_of(self, sample: Sample) -> str:
        return self.reference_text(sample)

    @functools.cached_property
    def _norm_index(self) -> dict[str, int]:
        """Normalised answer -> its first index in the set."""
        out: dict[str, int] = {}
        for i, a in enumerate(self.answers):
            out.setdefault(normalize_vqa_answer(a), i)
        return out

    def label_index(self, sample: Sample) -> int:
        """The reference answer's index; when it is outside the set, the in-set human answer with the most
        votes (after VQA normalisation), since the attack's target must be an answer the model can give."""
        answer = self.answer_of(sample)
        if answer in self._index:
            return self._index[answer]
        votes: dict[int, int] = {}
        for a in [answer, *(sample.answers or [])]:
            i = self._norm_index.get(normalize_vqa_answer(a))
            if i is not None:
                votes[i] = votes.get(i, 0) + 1
        if not votes:
            raise RobustOFAError(f"sample {sample.uid}: answer {answer!r} is not in the vqa answer set")
        return max(votes, key=lambda i: (votes[i], -i))

    def judge(self, value, sample) -> Prediction:
        credit, correct = vqa_credit(value, sample.answers or [self.answer_of(sample)],
                                     sample.meta.get("answer_scores"), sample.meta.get("answer_metric"))
        return Prediction(value, credit, correct)

    def metrics(self, preds, samples) -> dict[str, float]:
        n = len(preds)
        return {"vqa_accuracy": sum(p.score for p in preds) / n, "accuracy": sum(p.correct for p in preds) / n}

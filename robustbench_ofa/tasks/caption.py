"""Captioning: beam-searched captions scored by CIDEr-D against the sample's references.

Per-sample CIDEr-D needs document frequencies from a reference corpus; ``set_corpus`` installs the
evaluation set's references (done by the evaluator) and otherwise each sample's own references are used.
A caption counts as correct when its CIDEr-D reaches ``correct_threshold``.
"""

from __future__ import annotations

import torch

from robustbench_ofa.data.fields import json_string_list, parse_captions
from robustbench_ofa.data.types import Sample
from robustbench_ofa.metrics import CiderD, corpus_bleu
from robustbench_ofa.models.generation import beam_search, greedy_decode
from robustbench_ofa.models.instructions import CAPTION_PROMPT, DEFAULT_MAX_WORDS, caption_target
from robustbench_ofa.tasks.base import TASK_REGISTRY, Prediction, Task, TaskBatch


@TASK_REGISTRY.register("caption")
class Captioning(Task):
    name = "caption"
    max_target_len = 24
    correct_threshold = 1.0
    main_metric = "cider"
    aliases = ("captioning",)
    manifest_fields = ("captions",)
    tsv_layout = ("caption", ("uniq_id", "image_id", "caption", "predict_objects", "image"))
    tsv_required = ("caption",)

    @classmethod
    def prompt(cls, text="", premise=None, max_words=DEFAULT_MAX_WORDS) -> str:
        return CAPTION_PROMPT

    @classmethod
    def answer_text(cls, answer, max_words=None) -> str:
        return " " + caption_target(answer, max_words)

    @classmethod
    def reference_text(cls, sample) -> str:
        return sample.captions[0] if sample.captions else ""

    @classmethod
    def read_manifest_fields(cls, sample, obj, where) -> None:
        sample.captions = json_string_list(obj, "captions", where)

    @classmethod
    def manifest_record(cls, sample) -> dict:
        return {"captions": list(sample.captions)}

    @classmethod
    def read_tsv_row(cls, sample, row) -> None:
        sample.captions = parse_captions(row.text("caption"), where=row.where)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._cider: CiderD | None = None

    def set_corpus(self, samples: list[Sample]) -> None:
        self._cider = CiderD([s.captions for s in samples])

    def prepare(self, samples: list[Sample]) -> None:
        """CIDEr-D's document frequencies come from the evaluation set's references."""
        self.set_corpus(list(samples))

    def text_token_ids(self) -> torch.Tensor:
        """Ids a caption may use: the BPE vocabulary and eos (no image codes or location bins)."""
        tok = self.tokenizer
        ids = torch.arange(min(tok.code_offset, tok.bin_offset))
        return ids[ids != tok.mask_token_id]

    def target_ids(self, sample: Sample) -> list[int]:
        return self.tokenizer.encode(self.answer_text(sample.captions[0]), add_special_tokens=False)

    @torch.no_grad()
    def decode_captions(self, model, enc) -> list[str]:
        """Captions decoded from encoder outputs with the task's beam (shared by predictions and text attacks)."""
        allowed = self.text_token_ids()
        if self.beam > 1:
            out = beam_search(model, enc, beam=self.beam, max_len=self.max_target_len, allowed_ids=allowed)
        else:
            out = greedy_decode(model, enc, max_len=self.max_target_len, allowed_ids=allowed)
        return [self.tokenizer.decode(t).strip() for t in out.tokens]

    @torch.no_grad()
    def predict(self, model, batch: TaskBatch, images: torch.Tensor | None = None) -> list[Prediction]:
        enc = self.encode(model, batch.input_ids, batch.images if images is None else images)
        return [self.judge(t, s) for t, s in zip(self.decode_captions(model, enc), batch.samples)]

    def judge(self, value, sample) -> Prediction:
        cider = self._cider or CiderD([sample.captions])
        score = float(cider.score(value, sample.captions))
        return Prediction(value, score, score >= self.correct_threshold)

    def adversarial_correct(self, pred: Prediction, clean_score: float, drop: float) -> bool:
        """An attack on a caption succeeds when CIDEr-D falls below ``(1 - drop)`` x its clean value."""
        return pred.score >= (1.0 - drop) * clean_score

    def metrics(self, preds, samples) -> dict[str, float]:
        return {"cider": sum(p.score for p in preds) / len(preds),
                "bleu4": corpus_bleu([p.value for p in preds], [s.captions for s in samples])}

    # -- text attacks: captioning has no free text, so OFA's fixed prompt is what is perturbed ----------
    def attacked_text(self, sample: Sample) -> str:
        return CAPTION_PROMPT.strip()

    def attacked_source(self, sample: Sample, text: str) -> str:
        return " " + text

    @torch.no_grad()
    def text_outputs(self, model, enc, samples) -> list[str]:
        return self.decode_captions(model, enc)

    def text_goal(self, output: str, sample, clean_score, drop) -> tuple[bool, float]:
        """Success: CIDEr-D below ``(1 - drop)`` x clean (the evaluator's rule); score: the relative drop."""
        cider = float(self.judge(output, sample).score)
        score = 0.0 if clean_score <= 0 else max(0.0, 1.0 - cider / clean_score)
        return cider < (1.0 - drop) * clean_score, score

"""Captioning: beam-searched captions scored by CIDEr-D against the sample's references.

Per-sample CIDEr-D needs document frequencies from a reference corpus; ``set_corpus`` installs the
evaluation set's references (done by the evaluator) and otherwise each sample's own references are used.
A caption counts as correct when its CIDEr-D reaches ``correct_threshold``.
"""

from __future__ import annotations

import torch

from robustbench_ofa.data.types import Sample
from robustbench_ofa.metrics import CiderD
from robustbench_ofa.models.generation import beam_search, greedy_decode
from robustbench_ofa.models.instructions import target_text
from robustbench_ofa.tasks.base import TASK_REGISTRY, Prediction, Task, TaskBatch


@TASK_REGISTRY.register("caption")
class Captioning(Task):
    name = "caption"
    max_target_len = 24
    correct_threshold = 1.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._cider: CiderD | None = None

    def set_corpus(self, samples: list[Sample]) -> None:
        self._cider = CiderD([s.captions for s in samples])

    def text_token_ids(self) -> torch.Tensor:
        """Ids a caption may use: the BPE vocabulary and eos (no image codes or location bins)."""
        tok = self.tokenizer
        ids = torch.arange(min(tok.code_offset, tok.bin_offset))
        return ids[ids != tok.mask_token_id]

    def target_ids(self, sample: Sample) -> list[int]:
        return self.tokenizer.encode(target_text("caption", sample.captions[0]), add_special_tokens=False)

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

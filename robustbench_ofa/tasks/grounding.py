"""Visual grounding: the referring expression -> 4 ``<bin_i>`` tokens -> a pixel box; correct at IoU >= 0.5."""

from __future__ import annotations

import torch

from robustbench_ofa.data.transforms import bins_to_box, box_to_bins, scale_box, unscale_box
from robustbench_ofa.data.types import Sample
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.metrics import box_iou
from robustbench_ofa.models.generation import beam_search, greedy_decode
from robustbench_ofa.tasks.base import TASK_REGISTRY, Prediction, Task, TaskBatch


@TASK_REGISTRY.register("grounding")
class Grounding(Task):
    name = "grounding"
    max_target_len = 4
    iou_threshold = 0.5

    def target_ids(self, sample: Sample) -> list[int]:
        if sample.box is None:
            raise RobustOFAError(f"sample {sample.uid}: field 'box' is required for grounding")
        resized = scale_box(sample.box, sample.image.size, self.image_size)
        bins = box_to_bins(resized, self.image_size, self.tokenizer.num_bins, self.max_image_size)
        return [self.tokenizer.bin_token_id(b) for b in bins]

    def tokens_to_box(self, tokens: list[int], sample: Sample) -> tuple[float, float, float, float]:
        bins = [self.tokenizer.bin_index(t) for t in tokens]
        box = bins_to_box(bins, self.image_size, self.tokenizer.num_bins, self.max_image_size)
        return unscale_box(box, sample.image.size, self.image_size)

    @torch.no_grad()
    def decode_boxes(self, model, enc, samples: list[Sample]) -> list[tuple[float, float, float, float]]:
        """Boxes (original-image pixels) decoded from encoder outputs as 4 bin tokens, with the task's beam.

        One place for the decoding rule, so predictions, attack success checks and text-attack queries agree.
        """
        allowed = self.tokenizer.bin_token_ids()
        if self.beam > 1:
            out = beam_search(model, enc, beam=self.beam, fixed_len=4, allowed_ids=allowed)
        else:
            out = greedy_decode(model, enc, fixed_len=4, allowed_ids=allowed)
        return [self.tokens_to_box(t, s) for t, s in zip(out.tokens, samples)]

    @torch.no_grad()
    def predict(self, model, batch: TaskBatch, images: torch.Tensor | None = None) -> list[Prediction]:
        enc = self.encode(model, batch.input_ids, batch.images if images is None else images)
        return [self.judge(b, s) for b, s in zip(self.decode_boxes(model, enc, batch.samples), batch.samples)]

    def judge(self, value, sample) -> Prediction:
        iou = box_iou(value, sample.box)
        return Prediction(tuple(round(v, 2) for v in value), iou, iou >= self.iou_threshold)

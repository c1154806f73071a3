"""Visual grounding: the referring expression -> 4 ``<bin_i>`` tokens -> a pixel box; correct at IoU >= 0.5."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from robustbench_ofa.data.fields import json_box, json_string, parse_region_coord
from robustbench_ofa.data.transforms import bins_to_box, box_to_bins, scale_box, unscale_box
from robustbench_ofa.data.types import Sample
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.metrics import box_iou
from robustbench_ofa.models.generation import beam_search, greedy_decode, sequence_nll
from robustbench_ofa.models.instructions import DEFAULT_MAX_WORDS, GROUNDING_TEMPLATE, pre_caption
from robustbench_ofa.tasks.base import TASK_REGISTRY, Prediction, Task, TaskBatch

#: Weight of the NLL tie-break in the text-attack score (below any IoU difference that matters).
NLL_TIE_BREAK = 0.01


@dataclass
class GroundingOutput:
    """A text-attack query's output: the decoded box (original pixels) and the reference box's NLL."""

    box: tuple[float, float, float, float]
    nll: float


@TASK_REGISTRY.register("grounding")
class Grounding(Task):
    name = "grounding"
    max_target_len = 4
    iou_threshold = 0.5
    main_metric = "acc@0.5"
    #: the 4-token decode from the attack's own encoder pass costs a few decoder steps
    checks_in_loop = True
    output_kind = "box"
    aliases = ("refcoco", "visual_grounding")
    manifest_fields = ("text", "box")
    tsv_layout = ("refcoco", ("uniq_id", "image_id", "text", "region_coord", "image"))
    tsv_required = ("text", "region_coord")

    @classmethod
    def prompt(cls, text="", premise=None, max_words=DEFAULT_MAX_WORDS) -> str:
        return GROUNDING_TEMPLATE.format(pre_caption(text, max_words))

    @classmethod
    def answer_text(cls, answer, max_words=None) -> str:
        raise RobustOFAError("target_text: grounding targets are <bin_i> tokens built from the box, not text")

    @classmethod
    def read_manifest_fields(cls, sample, obj, where) -> None:
        sample.text = json_string(obj, "text", where)
        sample.box = json_box(obj, where, sample.image.width, sample.image.height)

    @classmethod
    def manifest_record(cls, sample) -> dict:
        if sample.box is None:
            raise RobustOFAError(f"sample '{sample.uid}': field 'box': expected a box for a grounding sample")
        return {"text": sample.text, "box": [float(v) for v in sample.box]}

    @classmethod
    def read_tsv_row(cls, sample, row) -> None:
        sample.text = row.text("text")
        sample.box = parse_region_coord(row.text("region_coord"), sample.image, where=row.where)

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

    def metrics(self, preds, samples) -> dict[str, float]:
        n = len(preds)
        return {"acc@0.5": sum(p.correct for p in preds) / n, "miou": sum(p.score for p in preds) / n}

    @torch.no_grad()
    def fooled(self, model, enc, samples) -> torch.Tensor:
        enc = type(enc)(last_hidden_state=enc.last_hidden_state.detach(), padding_mask=enc.padding_mask,
                        position_embedding=enc.position_embedding.detach())
        boxes = self.decode_boxes(model, enc, samples)
        return torch.tensor([not self.judge(b, s).correct for b, s in zip(boxes, samples)],
                            device=enc.last_hidden_state.device)

    @torch.no_grad()
    def text_outputs(self, model, enc, samples) -> list[GroundingOutput]:
        eos = self.tokenizer.eos_token_id
        targets = torch.tensor([self.target_ids(s)[: self.max_target_len] + [eos] for s in samples],
                               dtype=torch.long, device=enc.last_hidden_state.device)
        boxes = self.decode_boxes(model, enc, samples)
        nll = sequence_nll(model, enc, targets)
        return [GroundingOutput(b, float(n)) for b, n in zip(boxes, nll)]

    def output_value(self, output: GroundingOutput):
        return output.box

    def text_goal(self, output: GroundingOutput, sample, clean_score, drop) -> tuple[bool, float]:
        """Success exactly when IoU < the threshold; score 1 - IoU plus a small tie-break from the reference
        box's NLL, so candidates that leave the box unchanged are still ranked (it never decides success)."""
        judged = self.judge(output.box, sample)
        tie = NLL_TIE_BREAK * (1.0 - math.exp(-max(output.nll, 0.0) / 4.0))
        return not judged.correct, 1.0 - float(judged.score) + tie

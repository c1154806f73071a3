"""Pretext tasks for pretraining the embedded model: OFA's object detection on generated scenes.

Why: OFA's pretraining mixes the downstream-style tasks with object detection (all objects of an image
as ``<bin> <bin> <bin> <bin> label`` sequences). Detection gives dense supervision: every object's
colour, shape, size and location per image, where VQA/VE give one word and grounding one box. A small
model trained from scratch on a CPU budget learns to see (and to map patches to location bins) far
faster with it. The generated scenes carry exact object lists (``Sample.meta["scene"]``), so any
generated image yields a detection target for free.

Detection is a training-only task here: it has a loss, but no metric (``predict`` is not provided).
"""

from __future__ import annotations

from collections.abc import Sequence

from robustbench_ofa.data.transforms import box_to_bins, scale_box
from robustbench_ofa.data.types import Sample
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.tasks.base import Task

#: OFA's detection instruction.
DETECTION_PROMPT = " what are the objects in the image?"


class SceneDetection(Task):
    """Every object of a generated scene, left to right: four ``<bin_i>`` then " size colour shape"."""

    name = "detection"
    max_target_len = 64

    def source_text(self, sample: Sample, text: str | None = None) -> str:
        return DETECTION_PROMPT

    def target_ids(self, sample: Sample) -> list[int]:
        scene = sample.meta.get("scene")
        if not scene:
            raise RobustOFAError(f"sample {sample.uid}: detection needs meta['scene'] (generated data only)")
        ids: list[int] = []
        for obj in sorted(scene, key=lambda o: (o["box"][0] + o["box"][2], o["box"][1] + o["box"][3])):
            box = scale_box(obj["box"], sample.image.size, self.image_size)
            bins = box_to_bins(box, self.image_size, self.tokenizer.num_bins, self.max_image_size)
            ids += [self.tokenizer.bin_token_id(b) for b in bins]
            ids += self.tokenizer.encode(f" {obj['size']} {obj['color']} {obj['shape']}", add_special_tokens=False)
        return ids

    def predict(self, model, batch, images=None):
        raise RobustOFAError("detection is a pretraining task only; it has no evaluation")


def detection_samples(samples: Sequence[Sample]) -> list[Sample]:
    """Detection samples sharing the images (and scene records) of generated samples of any task."""
    return [Sample(uid=f"{s.uid}-det", task="detection", image=s.image, meta=s.meta) for s in samples]

"""The one sample record every data source produces and every task consumes.

Generated data, OFA's TSV releases and JSONL manifests all become ``Sample`` objects, so the training,
evaluation and attack code never needs to know where a sample came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

#: The four OFA tasks the suite knows, by their short names.
TASKS = ("grounding", "ve", "vqa", "caption")

#: Visual-entailment labels, in the order used for answer-set logits.
VE_LABELS = ("yes", "no", "maybe")


@dataclass
class Sample:
    """One example of one task.

    Fields used per task:
      grounding: ``text`` (referring expression), ``box`` [x0, y0, x1, y1] in pixels of ``image``.
      ve:        ``text`` (hypothesis), optional ``premise``, ``label`` in VE_LABELS.
      vqa:       ``text`` (question), ``answers`` (all human answers, repeats allowed; the first is
                 the training target unless ``label`` is set).
      caption:   ``captions`` (one or more references).
    """

    uid: str
    task: str
    image: Image.Image
    text: str = ""
    premise: str | None = None
    box: tuple[float, float, float, float] | None = None
    label: str | None = None
    answers: list[str] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    @property
    def target_text(self) -> str:
        """The training target as text (grounding targets are boxes, handled by the task code)."""
        if self.task == "ve":
            return self.label or ""
        if self.task == "vqa":
            if self.label:
                return self.label
            return self.answers[0] if self.answers else ""
        if self.task == "caption":
            return self.captions[0] if self.captions else ""
        return ""

"""The one sample record every data source produces and every task consumes.

Generated data, OFA's TSV releases and JSONL manifests all become ``Sample`` objects, so the training,
evaluation and attack code never needs to know where a sample came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

#: Visual-entailment labels, in the order used for answer-set logits.
VE_LABELS = ("yes", "no", "maybe")


@dataclass
class Sample:
    """One example of one task.

    Fields used per task (each task class reads and checks its own: ``robustbench_ofa.tasks``; its
    ``reference_text`` is the training target as text):
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

"""Readers for the TSV files OFA released for its downstream tasks.

OFA ships every dataset as headerless, tab-separated text with the image inline as a base64 string
(decoded with ``urlsafe_b64decode``; plain base64 works too). The column layouts below were read off
OFA's dataset classes (``data/mm_data/*_dataset.py``) together with the ``selected_cols`` of its
run scripts, which pick columns out of the full files:

==========  ========  ===================================================================
layout      task      columns (0-based order in the file)
==========  ========  ===================================================================
refcoco     grounding uniq_id, image_id, text, region_coord ("x0,y0,x1,y1" pixels), image
snli_ve     ve        uniq_id, image_id, image, hypothesis, caption (the premise), label
vqa         vqa       uniq_id (question id), image_id, question, ref, predict_objects, image
caption     caption   uniq_id, image_id, caption (references joined by "&&"), predict_objects, image
==========  ========  ===================================================================

RefCOCO, RefCOCO+ and RefCOCOg share the ``refcoco`` layout. SNLI-VE labels are
entailment/neutral/contradiction and become yes/maybe/no, as in OFA. A VQA ``ref`` is
``conf|!+answer&&conf|!+answer...`` where conf is the answer's VQA soft score; see ``parse_vqa_ref``
for how it becomes ``Sample.answers``. Columns a task does not use (``image_id``, ``predict_objects``)
are kept in ``Sample.meta``.

Files are streamed line by line (OFA's files run to tens of GB) and every problem is reported as a
one-line ``RobustOFAError``: ``FILE:LINE: field 'X': expected ..., got ...``.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from robustbench_ofa.data.transforms import Box, validate_box
from robustbench_ofa.data.types import TASKS, Sample
from robustbench_ofa.errors import RobustOFAError


@dataclass(frozen=True)
class TsvLayout:
    """The column names of one TSV format, in file order, and the task it feeds.

    Column names are the ones OFA's code uses. A custom layout may reorder them or add columns of its
    own; any column the task does not read is kept in ``Sample.meta``.
    """

    name: str
    task: str
    columns: tuple[str, ...]


#: OFA's released layouts, by name.
LAYOUTS: dict[str, TsvLayout] = {
    "refcoco": TsvLayout("refcoco", "grounding", ("uniq_id", "image_id", "text", "region_coord", "image")),
    "snli_ve": TsvLayout("snli_ve", "ve", ("uniq_id", "image_id", "image", "hypothesis", "caption", "label")),
    "vqa": TsvLayout("vqa", "vqa", ("uniq_id", "image_id", "question", "ref", "predict_objects", "image")),
    "caption": TsvLayout(
        "caption", "caption", ("uniq_id", "image_id", "caption", "predict_objects", "image")
    ),
}

#: The layout each task reads when ``fmt`` is not given.
DEFAULT_LAYOUT: dict[str, str] = {"grounding": "refcoco", "ve": "snli_ve", "vqa": "vqa", "caption": "caption"}

#: Columns each task cannot do without (a custom layout must name them).
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "grounding": ("uniq_id", "text", "region_coord", "image"),
    "ve": ("uniq_id", "image", "hypothesis", "label"),
    "vqa": ("uniq_id", "question", "ref", "image"),
    "caption": ("uniq_id", "caption", "image"),
}

#: Columns the task parsers read; every other column goes to ``Sample.meta``.
_CONSUMED: dict[str, frozenset[str]] = {
    task: frozenset(cols) | ({"caption"} if task == "ve" else set())
    for task, cols in REQUIRED_COLUMNS.items()
}

#: SNLI-VE label words (and OFA's own answer words) -> OFA's answer words.
VE_LABEL_MAP: dict[str, str] = {
    "entailment": "yes",
    "contradiction": "no",
    "neutral": "maybe",
    "yes": "yes",
    "no": "no",
    "maybe": "maybe",
}


def _one_line(text: object, limit: int = 120) -> str:
    """Squash an arbitrary message or value into a short single line for an error message."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def show_value(value: object) -> str:
    """A user's value as it should appear in an error message: its repr, on one line, shortened."""
    return _one_line(repr(value))


def field_error(where: str, field: str, expected: str, got: str | None = None) -> RobustOFAError:
    """The project's error shape: ``FILE:LINE: field 'X': expected ..., got ...``.

    ``got`` is already-formatted text: a description ("an empty cell") or ``show_value(value)``.
    """
    tail = f", got {got}" if got is not None else ""
    return RobustOFAError(f"{where}: field '{field}': expected {expected}{tail}")


def decode_image_bytes(data: bytes, *, where: str, field: str = "image") -> Image.Image:
    """Decode encoded image bytes (JPEG, PNG, ...) into an RGB PIL image, fully loaded.

    Loading eagerly surfaces truncated or corrupt images here, with their file and line, instead of
    deep inside a batch later. OFA converts every image to RGB; so do we.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise field_error(
            where, field, "an encoded image (JPEG, PNG, ...)", f"undecodable data ({_one_line(exc, 80)})"
        ) from None


def decode_base64_image(text: str, *, where: str, field: str = "image") -> Image.Image:
    """Decode one base64 image cell; accepts the standard and URL-safe alphabets, padding optional."""
    cleaned = text.strip()
    if not cleaned:
        raise field_error(where, field, "a base64-encoded image", "an empty cell")
    cleaned = cleaned.replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        data = base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        raise field_error(where, field, "a base64-encoded image", "text that is not valid base64") from None
    return decode_image_bytes(data, where=where, field=field)


def encode_image_base64(image: Image.Image, fmt: str = "PNG") -> str:
    """Encode a PIL image as OFA does in its TSVs (URL-safe base64); used to write test and export files."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return base64.urlsafe_b64encode(buffer.getvalue()).decode("ascii")


def parse_region_coord(text: str, image: Image.Image, *, where: str, field: str = "region_coord") -> Box:
    """``"x0,y0,x1,y1"`` in pixels -> a validated box inside ``image`` (see ``validate_box``)."""
    parts = text.strip().split(",")
    if len(parts) != 4:
        raise field_error(where, field, "4 comma-separated numbers x0,y0,x1,y1", show_value(text))
    try:
        coords = [float(p) for p in parts]
    except ValueError:
        raise field_error(where, field, "4 comma-separated numbers x0,y0,x1,y1", show_value(text)) from None
    return validate_box(coords, image.width, image.height, field=field, where=where)


def parse_ve_label(text: str, *, where: str, field: str = "label") -> str:
    """SNLI-VE label -> yes/no/maybe (OFA's mapping: entailment/contradiction/neutral)."""
    label = VE_LABEL_MAP.get(text.strip().lower())
    if label is None:
        raise field_error(
            where, field, "one of entailment/neutral/contradiction (or yes/maybe/no)", show_value(text)
        )
    return label


def parse_vqa_ref(text: str, *, where: str, field: str = "ref") -> tuple[dict[str, float], list[str]]:
    """Parse ``conf|!+answer&&conf|!+answer...`` into (scores, answers).

    ``scores`` are OFA's soft scores, kept exactly (OFA's evaluation credits a prediction with its score).
    OFA's files hold those scores instead of the ten raw human answers, so ``answers`` reconstructs
    a list of repeats whose min(n/3, 1) accuracy matches the score: each answer appears
    ``clamp(round(conf * 3), 1, 3)`` times (0.3 -> 1, 0.6 -> 2, >= 0.9 -> 3), highest score first, so
    ``answers[0]`` is OFA's training target. Answers with a score of 0 are dropped.
    """
    scores: dict[str, float] = {}
    for item in text.strip().split("&&"):
        conf_text, sep, answer = item.partition("|!+")
        answer = answer.strip()
        try:
            conf = float(conf_text)
        except ValueError:
            conf = float("nan")
        if not sep or not answer or not (0.0 <= conf <= 1.0):
            raise field_error(
                where, field, "'conf|!+answer' items joined by '&&' (conf in [0, 1])", show_value(item)
            )
        scores[answer] = max(conf, scores.get(answer, 0.0))
    ranked = sorted((a for a in scores if scores[a] > 0), key=lambda a: -scores[a])
    if not ranked:
        raise field_error(where, field, "at least one answer with a positive score", show_value(text))
    answers = [a for a in ranked for _ in range(min(3, max(1, round(scores[a] * 3))))]
    return scores, answers


def parse_captions(text: str, *, where: str, field: str = "caption") -> list[str]:
    """Reference captions joined by ``&&`` -> list, blanks dropped (a training file has one per row)."""
    captions = [" ".join(c.split()) for c in text.split("&&")]
    captions = [c for c in captions if c]
    if not captions:
        raise field_error(where, field, "one or more captions joined by '&&'", show_value(text))
    return captions


class _Row:
    """One TSV line as named cells, with the error location attached."""

    def __init__(self, cells: list[str], layout: TsvLayout, where: str) -> None:
        self.cells = dict(zip(layout.columns, cells))
        self.where = where

    def text(self, name: str) -> str:
        """A required, non-empty text cell (surrounding whitespace removed)."""
        value = self.cells.get(name, "").strip()
        if not value:
            raise field_error(self.where, name, "a non-empty value", "an empty cell")
        return value

    def optional(self, name: str) -> str | None:
        value = self.cells.get(name, "").strip()
        return value or None


def _row_to_sample(row: _Row, task: str, source: str) -> Sample:
    """Build the task's ``Sample`` from one row; the image is decoded first so boxes can be checked."""
    where = row.where
    uid = row.text("uniq_id")
    image = decode_base64_image(row.cells.get("image", ""), where=where)
    meta: dict = {k: v for k, v in row.cells.items() if k not in _CONSUMED[task]}
    meta["source"] = source
    sample = Sample(uid=uid, task=task, image=image, meta=meta)
    if task == "grounding":
        sample.text = row.text("text")
        sample.box = parse_region_coord(row.text("region_coord"), image, where=where)
    elif task == "ve":
        sample.text = row.text("hypothesis")
        sample.premise = row.optional("caption")
        sample.label = parse_ve_label(row.text("label"), where=where)
    elif task == "vqa":
        sample.text = row.text("question")
        scores, sample.answers = parse_vqa_ref(row.text("ref"), where=where)
        sample.label = sample.answers[0]
        meta["answer_scores"] = scores
    else:
        sample.captions = parse_captions(row.text("caption"), where=where)
    return sample


def resolve_layout(task: str, fmt: str | TsvLayout | None = None) -> TsvLayout:
    """The layout to read ``task`` with: ``fmt`` by name or object, else the task's OFA default."""
    if task not in TASKS:
        raise RobustOFAError(f"unknown task '{task}': expected one of {', '.join(TASKS)}")
    if fmt is None:
        layout = LAYOUTS[DEFAULT_LAYOUT[task]]
    elif isinstance(fmt, TsvLayout):
        layout = fmt
    elif fmt in LAYOUTS:
        layout = LAYOUTS[fmt]
    else:
        raise RobustOFAError(f"unknown TSV format '{fmt}': expected one of {', '.join(LAYOUTS)}")
    if layout.task != task:
        raise RobustOFAError(f"TSV format '{layout.name}' is for task '{layout.task}', not '{task}'")
    missing = [c for c in REQUIRED_COLUMNS[task] if c not in layout.columns]
    if missing:
        raise RobustOFAError(f"TSV format '{layout.name}' lacks column(s) {missing} needed by task '{task}'")
    return layout


def read_tsv(
    path: str | Path,
    task: str,
    fmt: str | TsvLayout | None = None,
    limit: int | None = None,
) -> Iterator[Sample]:
    """Stream ``Sample``s from one of OFA's TSV files, at most ``limit`` of them.

    Arguments are checked now; the file is read lazily as the iterator is consumed, so a bad row
    raises when it is reached. Blank lines are skipped.
    """
    layout = resolve_layout(task, fmt)
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise RobustOFAError(f"limit must be a non-negative integer, got {limit!r}")
    path = Path(path)
    if not path.is_file():
        raise RobustOFAError(f"{path}: TSV file not found")
    return _iter_tsv(path, task, layout, limit)


def _iter_tsv(path: Path, task: str, layout: TsvLayout, limit: int | None) -> Iterator[Sample]:
    if limit == 0:
        return
    produced = 0
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise RobustOFAError(f"{where}: expected UTF-8 text, got undecodable bytes") from None
            if not line.strip():
                continue
            cells = line.split("\t")
            if len(cells) != len(layout.columns):
                raise RobustOFAError(
                    f"{where}: expected {len(layout.columns)} tab-separated columns "
                    f"({', '.join(layout.columns)}) for format '{layout.name}', got {len(cells)}"
                )
            yield _row_to_sample(_Row(cells, layout, where), task, where)
            produced += 1
            if limit is not None and produced >= limit:
                return

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

from robustbench_ofa.data.fields import (  # noqa: F401  (re-exported: the readers' helpers)
    VE_LABEL_MAP,
    TsvRow,
    _one_line,
    field_error,
    parse_captions,
    parse_region_coord,
    parse_ve_label,
    parse_vqa_ref,
    show_value,
)
from robustbench_ofa.data.types import Sample
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.tasks import task_class, task_classes


@dataclass(frozen=True)
class TsvLayout:
    """The column names of one TSV format, in file order, and the task it feeds.

    Column names are the ones OFA's code uses. A custom layout may reorder them or add columns of its
    own; any column the task does not read is kept in ``Sample.meta``.
    """

    name: str
    task: str
    columns: tuple[str, ...]


def _layouts() -> dict[str, TsvLayout]:
    """OFA's released layouts, by name: each task declares its own (``Task.tsv_layout``)."""
    return {cls.tsv_layout[0]: TsvLayout(cls.tsv_layout[0], name, cls.tsv_layout[1])
            for name, cls in task_classes().items() if cls.tsv_layout is not None}


#: OFA's released layouts, by name.
LAYOUTS: dict[str, TsvLayout] = _layouts()

#: The layout each task reads when ``fmt`` is not given.
DEFAULT_LAYOUT: dict[str, str] = {layout.task: name for name, layout in LAYOUTS.items()}


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


def _row_to_sample(row: TsvRow, task: str, source: str) -> Sample:
    """Build the task's ``Sample`` from one row; the image is decoded first so boxes can be checked."""
    cls = task_class(task)
    image = decode_base64_image(row.cells.get("image", ""), where=row.where)
    consumed = {"uniq_id", "image", *cls.tsv_required, *cls.tsv_optional}
    meta: dict = {k: v for k, v in row.cells.items() if k not in consumed}
    meta["source"] = source
    sample = Sample(uid=row.text("uniq_id"), task=task, image=image, meta=meta)
    cls.read_tsv_row(sample, row)
    return sample


def resolve_layout(task: str, fmt: str | TsvLayout | None = None) -> TsvLayout:
    """The layout to read ``task`` with: ``fmt`` by name or object, else the task's OFA default."""
    cls = task_class(task)
    if fmt is None:
        if task not in DEFAULT_LAYOUT:
            raise RobustOFAError(f"task '{task}' has no TSV layout of its own: name a format")
        layout = LAYOUTS[DEFAULT_LAYOUT[task]]
    elif isinstance(fmt, TsvLayout):
        layout = fmt
    elif fmt in LAYOUTS:
        layout = LAYOUTS[fmt]
    else:
        raise RobustOFAError(f"unknown TSV format '{fmt}': expected one of {', '.join(LAYOUTS)}")
    if layout.task != task:
        raise RobustOFAError(f"TSV format '{layout.name}' is for task '{layout.task}', not '{task}'")
    missing = [c for c in ("uniq_id", *cls.tsv_required, "image") if c not in layout.columns]
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
            yield _row_to_sample(TsvRow(dict(zip(layout.columns, cells)), where), task, where)
            produced += 1
            if limit is not None and produced >= limit:
                return

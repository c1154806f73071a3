"""JSONL manifests: the simple way to bring your own images to the benchmark.

A manifest is a UTF-8 text file with one JSON object per line (blank lines are skipped). Every object
has ``image``, a path to an image file, relative to the manifest's folder or absolute, and optionally
``id`` (string or number; default ``<manifest name>-<line>``). The other fields depend on the task (each
task class says which it reads: ``Task.manifest_fields``); for the built-in tasks:

grounding
    ``text``: the referring expression; ``box``: [x0, y0, x1, y1] in pixels of the image
    (x0 < x1, y0 < y1, inside the image; up to 1 px overshoot is clamped).
ve
    ``hypothesis``; optional ``premise``; ``label``: yes/no/maybe, or the SNLI names
    entailment/contradiction/neutral (mapped to yes/no/maybe as OFA does).
vqa
    ``question``; ``answers``: the list of all human answers, repeats allowed (VQA accuracy counts
    them); optional ``answer``: the training target (default: ``answers[0]``). Scoring (one rule,
    ``metrics.vqa_answer_metric``): with 3 or more answers (VQAv2-style) the consensus rule
    min(#answers equal to the prediction / 3, 1), correct at >= 0.5; with fewer, exact match after VQA
    answer normalisation against any of them, 1 or 0. Optional ``answer_metric``: ``"vqa"``
    (consensus) or ``"exact"`` forces a rule for that line; to set it for a whole manifest, put it
    on every line. Optional ``answer_scores``: {answer: score in [0, 1]}, OFA's soft scores (what
    ``write_manifest`` writes for samples read from OFA's TSVs); when present, and no
    ``answer_metric`` says otherwise, the credit is the predicted answer's score, correct at >= 0.5.
caption
    ``captions``: the list of reference captions (at least one).

Example lines, one per task::

    {"id": "r1", "image": "images/dog.jpg", "text": "the dog on the left", "box": [10, 20, 200, 240]}
    {"id": "v1", "image": "images/dog.jpg", "hypothesis": "two dogs play", "label": "entailment"}
    {"id": "q1", "image": "images/dog.jpg", "question": "how many dogs?", "answers": ["2", "2", "two"]}
    {"id": "q2", "image": "images/dog.jpg", "question": "what is on the grass?", "answers": ["dog"]}
    {"id": "c1", "image": "images/dog.jpg", "captions": ["two dogs on grass", "dogs playing"]}

Any other key is kept, unchecked, in ``Sample.meta`` (``write_manifest`` writes JSON-serialisable meta
back the same way). Every problem is a one-line ``RobustOFAError``
``FILE:LINE: field 'X': expected ..., got ...``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from robustbench_ofa.data.fields import field_error, json_string, show_value
from robustbench_ofa.data.tsv import decode_image_bytes
from robustbench_ofa.data.types import Sample
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.tasks import task_class

_COMMON_FIELDS = ("id", "image")

#: Meta keys the readers add themselves; not written back, since they describe where a sample was read.
_VOLATILE_META = ("source",)


def _uid(obj: dict, where: str, default: str) -> str:
    if "id" not in obj or obj["id"] is None:
        return default
    value = obj["id"]
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
        raise field_error(where, "id", "a non-empty string or an integer", show_value(value))
    return str(value).strip()


def _load_image(obj: dict, where: str, folder: Path):
    """Open the line's image file (relative paths are relative to the manifest's folder)."""
    name = json_string(obj, "image", where)
    path = Path(name)
    if not path.is_absolute():
        path = folder / path
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise field_error(where, "image", "an existing image file", f"missing file {path}") from None
    except OSError as exc:
        raise field_error(where, "image", "a readable image file", f"{path} ({exc.strerror})") from None
    return decode_image_bytes(data, where=where)


def _parse_line(line: str, where: str, task: str, folder: Path, default_uid: str) -> Sample:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise RobustOFAError(
            f"{where}: expected one JSON object per line, got invalid JSON ({exc.msg})"
        ) from None
    if not isinstance(obj, dict):
        raise RobustOFAError(f"{where}: expected one JSON object per line, got {type(obj).__name__}")
    uid = _uid(obj, where, default_uid)
    image = _load_image(obj, where, folder)
    cls = task_class(task)
    known = set(_COMMON_FIELDS) | set(cls.manifest_fields)
    meta = {k: v for k, v in obj.items() if k not in known}
    meta["source"] = where
    sample = Sample(uid=uid, task=task, image=image, meta=meta)
    cls.read_manifest_fields(sample, obj, where)
    return sample


def read_manifest(path: str | Path, task: str, limit: int | None = None) -> Iterator[Sample]:
    """Stream ``Sample``s from a JSONL manifest (format in the module docstring), at most ``limit``.

    Arguments are checked now; lines are read (and images opened) lazily as the iterator is consumed.
    Wrap in ``list(...)`` to load everything.
    """
    task_class(task)  # an unknown task is one line naming the registered ones
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise RobustOFAError(f"limit must be a non-negative integer, got {limit!r}")
    path = Path(path)
    if not path.is_file():
        raise RobustOFAError(f"{path}: manifest file not found")
    return _iter_manifest(path, task, limit)


def _iter_manifest(path: Path, task: str, limit: int | None) -> Iterator[Sample]:
    if limit == 0:
        return
    folder = path.resolve().parent
    produced = 0
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8").strip()
            except UnicodeDecodeError:
                raise RobustOFAError(f"{where}: expected UTF-8 text, got undecodable bytes") from None
            if not line:
                continue
            yield _parse_line(line, where, task, folder, f"{path.stem}-{lineno}")
            produced += 1
            if limit is not None and produced >= limit:
                return


def _task_fields_of(sample: Sample) -> dict:
    """The task's manifest fields for ``sample`` (the inverse of reading them)."""
    try:
        cls = task_class(sample.task)
    except RobustOFAError as exc:
        raise RobustOFAError(f"sample '{sample.uid}': field 'task': {exc}") from None
    return cls.manifest_record(sample)


def _json_meta(sample: Sample, reserved: set[str]) -> dict:
    """Meta entries that can round-trip through JSON (others, e.g. arrays, are left out)."""
    out = {}
    for key, value in sample.meta.items():
        if key in reserved or key in _VOLATILE_META:
            continue
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        out[key] = value
    return out


def _image_filename(index: int, uid: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", uid)[:60] or "sample"
    return f"{index:06d}_{safe}.png"


def write_manifest(samples: Iterable[Sample], path: str | Path, image_dir: str | Path) -> Path:
    """Export samples as a manifest plus PNG images, readable back with ``read_manifest``.

    Images go to ``image_dir`` (created if needed) as lossless PNGs, so a round trip keeps pixels
    exactly. Image paths are written relative to the manifest's folder when ``image_dir`` lies inside
    it, absolute otherwise. Returns the manifest path.
    """
    path = Path(path)
    image_dir = Path(image_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    image_dir.mkdir(parents=True, exist_ok=True)
    folder = path.resolve().parent
    with path.open("w", encoding="utf-8") as handle:
        for index, sample in enumerate(samples):
            image_path = (image_dir / _image_filename(index, sample.uid)).resolve()
            sample.image.save(image_path, format="PNG")
            if image_path.is_relative_to(folder):
                image_ref = os.path.relpath(image_path, folder).replace(os.sep, "/")
            else:
                image_ref = str(image_path)
            record = {"id": sample.uid, "image": image_ref, **_task_fields_of(sample)}
            record.update(_json_meta(sample, set(record) | set(task_class(sample.task).manifest_fields)))
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path

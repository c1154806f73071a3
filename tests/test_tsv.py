"""Readers for OFA's TSV releases: every layout, and every way a row can be wrong."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robustbench_ofa.data.tsv import (
    LAYOUTS,
    TsvLayout,
    encode_image_base64,
    parse_vqa_ref,
    read_tsv,
)
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.tasks import task_class


def _image(width: int = 20, height: int = 10, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


IMG = _image()
B64 = encode_image_base64(IMG)


def _write(tmp_path: Path, rows: list[list[str]], name: str = "data.tsv") -> Path:
    path = tmp_path / name
    path.write_text("".join("\t".join(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _refcoco_row(uid: str = "1", text: str = "the left dog", coord: str = "2,1,12.5,9", image: str = B64):
    return [uid, "img7", text, coord, image]


def _error(path: Path, task: str, **kwargs) -> str:
    with pytest.raises(RobustOFAError) as info:
        list(read_tsv(path, task, **kwargs))
    message = str(info.value)
    assert "\n" not in message
    return message


# --- every reader ------------------------------------------------------------------------------


def test_read_refcoco(tmp_path):
    path = _write(tmp_path, [_refcoco_row(), _refcoco_row(uid="2", coord="0,0,20,10")])
    samples = list(read_tsv(path, "grounding"))
    assert [s.uid for s in samples] == ["1", "2"]
    first = samples[0]
    assert first.task == "grounding"
    assert first.text == "the left dog"
    assert first.box == (2.0, 1.0, 12.5, 9.0)
    assert first.image.size == (20, 10) and first.image.mode == "RGB"
    assert np.array_equal(np.asarray(first.image), np.asarray(IMG))
    assert first.meta["image_id"] == "img7"
    assert first.meta["source"] == f"{path}:1"


def test_read_snli_ve_maps_labels(tmp_path):
    rows = [
        ["1", "im", B64, "two dogs play", "dogs in a park", "entailment"],
        ["2", "im", B64, "a cat sleeps", "dogs in a park", "contradiction"],
        ["3", "im", B64, "dogs are happy", "", "neutral"],
        ["4", "im", B64, "dogs", "park", "Yes"],
    ]
    samples = list(read_tsv(_write(tmp_path, rows), "ve"))
    assert [s.label for s in samples] == ["yes", "no", "maybe", "yes"]
    assert samples[0].text == "two dogs play"
    assert samples[0].premise == "dogs in a park"
    assert samples[2].premise is None
    assert task_class(samples[0].task).reference_text(samples[0]) == "yes"


def test_read_vqa(tmp_path):
    rows = [["q1", "im", "how many dogs?", "0.6|!+2&&1.0|!+two&&0.3|!+3", "dog&&grass", B64]]
    (sample,) = read_tsv(_write(tmp_path, rows), "vqa")
    assert sample.text == "how many dogs?"
    assert sample.answers == ["two", "two", "two", "2", "2", "3"]
    assert sample.label == "two"
    assert task_class(sample.task).reference_text(sample) == "two"
    assert sample.meta["answer_scores"] == {"2": 0.6, "two": 1.0, "3": 0.3}
    assert sample.meta["predict_objects"] == "dog&&grass"


def test_read_caption_splits_references(tmp_path):
    rows = [["c1", "391895", "A man rides a bike.&&  a man   on a bicycle &&", "person&&bicycle", B64]]
    (sample,) = read_tsv(_write(tmp_path, rows), "caption")
    assert sample.captions == ["A man rides a bike.", "a man on a bicycle"]
    assert sample.meta["image_id"] == "391895"
    assert task_class(sample.task).reference_text(sample) == "A man rides a bike."


def test_standard_base64_and_missing_padding_accepted(tmp_path):
    buffer = io.BytesIO()
    IMG.save(buffer, format="PNG")
    standard = base64.b64encode(buffer.getvalue()).decode().rstrip("=")
    (sample,) = read_tsv(_write(tmp_path, [_refcoco_row(image=standard)]), "grounding")
    assert np.array_equal(np.asarray(sample.image), np.asarray(IMG))


def test_jpeg_and_grayscale_images_become_rgb(tmp_path):
    gray = Image.new("L", (20, 10), 128)
    row = _refcoco_row(image=encode_image_base64(gray, fmt="JPEG"))
    (sample,) = read_tsv(_write(tmp_path, [row]), "grounding")
    assert sample.image.mode == "RGB"


def test_box_within_one_pixel_is_clamped(tmp_path):
    (sample,) = read_tsv(_write(tmp_path, [_refcoco_row(coord="-0.4,0,20.6,10")]), "grounding")
    assert sample.box == (0.0, 0.0, 20.0, 10.0)


def test_limit_and_laziness(tmp_path):
    rows = [_refcoco_row(uid=str(i)) for i in range(5)] + [["broken"]]
    path = _write(tmp_path, rows)
    assert [s.uid for s in read_tsv(path, "grounding", limit=3)] == ["0", "1", "2"]
    assert list(read_tsv(path, "grounding", limit=0)) == []
    iterator = read_tsv(path, "grounding")
    assert next(iterator).uid == "0"  # nothing past the first row was parsed yet


def test_blank_lines_are_skipped(tmp_path):
    path = tmp_path / "blank.tsv"
    path.write_text("\t".join(_refcoco_row()) + "\r\n\n" + "\t".join(_refcoco_row(uid="2")) + "\n\n")
    assert [s.uid for s in read_tsv(path, "grounding")] == ["1", "2"]


def test_custom_layout(tmp_path):
    layout = TsvLayout("mine", "grounding", ("image", "uniq_id", "region_coord", "text", "split"))
    path = _write(tmp_path, [[B64, "u9", "1,1,5,5", "a box", "val"]])
    (sample,) = read_tsv(path, "grounding", fmt=layout)
    assert (sample.uid, sample.text, sample.box, sample.meta["split"]) == ("u9", "a box", (1, 1, 5, 5), "val")


def test_named_format_selects_layout(tmp_path):
    path = _write(tmp_path, [_refcoco_row()])
    assert len(list(read_tsv(path, "grounding", fmt="refcoco"))) == 1
    assert LAYOUTS["refcoco"].columns[3] == "region_coord"


def test_parse_vqa_ref_counts_follow_scores():
    scores, answers = parse_vqa_ref("0.9|!+yes&&0.3|!+no&&0|!+maybe", where="f:1")
    assert answers == ["yes", "yes", "yes", "no"]
    assert scores == {"yes": 0.9, "no": 0.3, "maybe": 0.0}


# --- argument errors ---------------------------------------------------------------------------


def test_argument_errors(tmp_path):
    path = _write(tmp_path, [_refcoco_row()])
    with pytest.raises(RobustOFAError, match="unknown task 'detect'"):
        read_tsv(path, "detect")
    with pytest.raises(RobustOFAError, match="unknown TSV format 'coco'"):
        read_tsv(path, "grounding", fmt="coco")
    with pytest.raises(RobustOFAError, match="format 'vqa' is for task 'vqa', not 'grounding'"):
        read_tsv(path, "grounding", fmt="vqa")
    with pytest.raises(RobustOFAError, match="lacks column"):
        read_tsv(path, "grounding", fmt=TsvLayout("bad", "grounding", ("uniq_id", "image")))
    with pytest.raises(RobustOFAError, match="limit"):
        read_tsv(path, "grounding", limit=-1)
    with pytest.raises(RobustOFAError, match="missing.tsv: TSV file not found"):
        read_tsv(tmp_path / "missing.tsv", "grounding")


# --- row errors: each names file, line and field -------------------------------------------------


def test_wrong_column_count(tmp_path):
    path = _write(tmp_path, [_refcoco_row(), _refcoco_row()[:4]])
    message = _error(path, "grounding")
    assert message.startswith(f"{path}:2: expected 5 tab-separated columns")
    assert "got 4" in message


def test_bad_base64(tmp_path):
    path = _write(tmp_path, [_refcoco_row(image="not*base64!")])
    message = _error(path, "grounding")
    assert message.startswith(f"{path}:1: field 'image': expected a base64-encoded image")


def test_empty_image_cell(tmp_path):
    path = _write(tmp_path, [_refcoco_row(image="  ")])
    assert _error(path, "grounding").startswith(f"{path}:1: field 'image': expected a base64")


def test_undecodable_image(tmp_path):
    junk = base64.urlsafe_b64encode(b"this is not an image at all").decode()
    path = _write(tmp_path, [_refcoco_row(), _refcoco_row(image=junk)])
    message = _error(path, "grounding")
    assert message.startswith(f"{path}:2: field 'image': expected an encoded image")


def test_truncated_image(tmp_path):
    buffer = io.BytesIO()
    _image(64, 64).save(buffer, format="PNG")
    truncated = base64.b64encode(buffer.getvalue()[:200]).decode()
    path = _write(tmp_path, [_refcoco_row(image=truncated)])
    assert _error(path, "grounding").startswith(f"{path}:1: field 'image': expected an encoded image")


def test_missing_text(tmp_path):
    path = _write(tmp_path, [_refcoco_row(text=" ")])
    assert _error(path, "grounding").startswith(f"{path}:1: field 'text': expected a non-empty value")


def test_missing_uid(tmp_path):
    path = _write(tmp_path, [_refcoco_row(uid="")])
    assert _error(path, "grounding").startswith(f"{path}:1: field 'uniq_id'")


@pytest.mark.parametrize("coord", ["1,2,3", "a,b,c,d", "1;2;3;4"])
def test_ill_formed_region_coord(tmp_path, coord):
    path = _write(tmp_path, [_refcoco_row(coord=coord)])
    message = _error(path, "grounding")
    assert message.startswith(f"{path}:1: field 'region_coord': expected 4 comma-separated numbers")


def test_box_outside_image(tmp_path):
    path = _write(tmp_path, [_refcoco_row(coord="0,0,25,10")])
    message = _error(path, "grounding")
    assert message.startswith(f"{path}:1: field 'region_coord': expected a box inside the 20x10 image")


def test_inverted_box(tmp_path):
    path = _write(tmp_path, [_refcoco_row(coord="10,0,5,10")])
    assert _error(path, "grounding").startswith(f"{path}:1: field 'region_coord': expected x0 < x1")


def test_bad_ve_label(tmp_path):
    path = _write(tmp_path, [["1", "im", B64, "h", "p", "entails"]])
    message = _error(path, "ve")
    assert message.startswith(f"{path}:1: field 'label': expected one of entailment/neutral/contradiction")
    assert "'entails'" in message


def test_missing_ve_hypothesis(tmp_path):
    path = _write(tmp_path, [["1", "im", B64, "", "p", "neutral"]])
    assert _error(path, "ve").startswith(f"{path}:1: field 'hypothesis'")


@pytest.mark.parametrize("ref", ["yes", "high|!+yes", "1.5|!+yes", "1.0|!+", "0|!+yes"])
def test_bad_vqa_ref(tmp_path, ref):
    path = _write(tmp_path, [["q1", "im", "what?", ref, "", B64]])
    assert _error(path, "vqa").startswith(f"{path}:1: field 'ref': expected")


def test_missing_vqa_question(tmp_path):
    path = _write(tmp_path, [["q1", "im", "", "1.0|!+yes", "", B64]])
    assert _error(path, "vqa").startswith(f"{path}:1: field 'question'")


def test_empty_captions(tmp_path):
    path = _write(tmp_path, [["c1", "im", " && ", "", B64]])
    assert _error(path, "caption").startswith(f"{path}:1: field 'caption': expected one or more captions")


def test_non_utf8_line(tmp_path):
    path = tmp_path / "latin.tsv"
    path.write_bytes(("\t".join(_refcoco_row(text="caf\xe9")) + "\n").encode("latin-1"))
    assert _error(path, "grounding").startswith(f"{path}:1: expected UTF-8 text")

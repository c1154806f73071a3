"""JSONL manifests: reading each task, every error path, and the write/read round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robustbench_ofa.data.manifest import read_manifest, write_manifest
from robustbench_ofa.data.types import Sample
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.tasks import task_class


def _image(width: int = 20, height: int = 10, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "images").mkdir()
    _image().save(tmp_path / "images" / "a.png")
    return tmp_path


def _write(folder: Path, records: list, name: str = "m.jsonl") -> Path:
    path = folder / name
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _error(path: Path, task: str) -> str:
    with pytest.raises(RobustOFAError) as info:
        list(read_manifest(path, task))
    message = str(info.value)
    assert "\n" not in message
    return message


# --- reading each task -------------------------------------------------------------------------


def test_grounding(folder):
    path = _write(folder, [{"id": "r1", "image": "images/a.png", "text": "left part", "box": [0, 1, 10, 9]}])
    (sample,) = read_manifest(path, "grounding")
    assert (sample.uid, sample.task, sample.text, sample.box) == (
        "r1",
        "grounding",
        "left part",
        (0, 1, 10, 9),
    )
    assert np.array_equal(np.asarray(sample.image), np.asarray(_image()))
    assert sample.meta == {"source": f"{path}:1"}


def test_ve_labels_and_premise(folder):
    records = [
        {"image": "images/a.png", "hypothesis": "h1", "label": "entailment", "premise": "p"},
        {"image": "images/a.png", "hypothesis": "h2", "label": "Contradiction"},
        {"image": "images/a.png", "hypothesis": "h3", "label": "neutral"},
        {"image": "images/a.png", "hypothesis": "h4", "label": "no"},
    ]
    samples = list(read_manifest(_write(folder, records), "ve"))
    assert [s.label for s in samples] == ["yes", "no", "maybe", "no"]
    assert samples[0].premise == "p" and samples[1].premise is None
    assert [s.uid for s in samples] == ["m-1", "m-2", "m-3", "m-4"]


def test_vqa(folder):
    record = {"id": 7, "image": "images/a.png", "question": "how many?", "answers": ["2", "2", "two"]}
    (sample,) = read_manifest(_write(folder, [record]), "vqa")
    assert (sample.uid, sample.text, sample.answers, sample.label) == (
        "7",
        "how many?",
        ["2", "2", "two"],
        None,
    )
    assert task_class(sample.task).reference_text(sample) == "2"
    record["answer"] = "two"
    (sample,) = read_manifest(_write(folder, [record]), "vqa")
    assert task_class(sample.task).reference_text(sample) == "two"


def test_caption_and_extra_keys_go_to_meta(folder):
    record = {"image": "images/a.png", "captions": ["a b", "c d"], "split": "val", "coco_id": 3}
    (sample,) = read_manifest(_write(folder, [record]), "caption")
    assert sample.captions == ["a b", "c d"]
    assert sample.meta["split"] == "val" and sample.meta["coco_id"] == 3


def test_absolute_image_path(folder, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "b.png"
    _image(seed=1).save(elsewhere)
    (sample,) = read_manifest(_write(folder, [{"image": str(elsewhere), "captions": ["x"]}]), "caption")
    assert np.array_equal(np.asarray(sample.image), np.asarray(_image(seed=1)))


def test_relative_paths_resolve_from_manifest_folder(folder, monkeypatch, tmp_path_factory):
    path = _write(folder, [{"image": "images/a.png", "captions": ["x"]}])
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    assert len(list(read_manifest(path, "caption"))) == 1


def test_limit_blank_lines_and_laziness(folder):
    good = {"image": "images/a.png", "captions": ["x"]}
    path = _write(folder, [good, "", good, good, "{broken"])
    assert len(list(read_manifest(path, "caption", limit=2))) == 2
    assert [s.uid for s in read_manifest(path, "caption", limit=3)] == ["m-1", "m-3", "m-4"]


# --- errors ------------------------------------------------------------------------------------


def test_argument_errors(folder):
    path = _write(folder, [{"image": "images/a.png", "captions": ["x"]}])
    with pytest.raises(RobustOFAError, match="unknown task"):
        read_manifest(path, "retrieval")
    with pytest.raises(RobustOFAError, match="manifest file not found"):
        read_manifest(folder / "nope.jsonl", "caption")
    with pytest.raises(RobustOFAError, match="limit"):
        read_manifest(path, "caption", limit=1.5)


def test_invalid_json(folder):
    path = _write(folder, [{"image": "images/a.png", "captions": ["x"]}, '{"image": '])
    assert _error(path, "caption").startswith(
        f"{path}:2: expected one JSON object per line, got invalid JSON"
    )


def test_line_not_an_object(folder):
    path = _write(folder, ["[1, 2]"])
    assert _error(path, "caption") == f"{path}:1: expected one JSON object per line, got list"


def test_missing_image_field(folder):
    path = _write(folder, [{"captions": ["x"]}])
    assert _error(path, "caption").startswith(f"{path}:1: field 'image': expected a non-empty string")


def test_missing_image_file(folder):
    path = _write(folder, [{"image": "images/nope.png", "captions": ["x"]}])
    message = _error(path, "caption")
    assert message.startswith(f"{path}:1: field 'image': expected an existing image file")
    assert "nope.png" in message


def test_unreadable_image_file(folder):
    (folder / "images" / "bad.jpg").write_bytes(b"definitely not a jpeg")
    path = _write(folder, [{"image": "images/bad.jpg", "captions": ["x"]}])
    assert _error(path, "caption").startswith(f"{path}:1: field 'image': expected an encoded image")


def test_missing_task_field(folder):
    path = _write(folder, [{"image": "images/a.png", "box": [0, 0, 5, 5]}])
    assert _error(path, "grounding") == (
        f"{path}:1: field 'text': expected a non-empty string, got nothing (field missing)"
    )


@pytest.mark.parametrize("box", [[0, 0, 5], "0,0,5,5", [0, 0, "5", 5], [0, 0, True, 5]])
def test_ill_formed_box(folder, box):
    path = _write(folder, [{"image": "images/a.png", "text": "t", "box": box}])
    assert _error(path, "grounding").startswith(f"{path}:1: field 'box': expected a list of 4 numbers")


def test_box_outside_image(folder):
    path = _write(folder, [{"image": "images/a.png", "text": "t", "box": [0, 0, 5, 30]}])
    assert _error(path, "grounding").startswith(
        f"{path}:1: field 'box': expected a box inside the 20x10 image"
    )


def test_missing_box(folder):
    path = _write(folder, [{"image": "images/a.png", "text": "t"}])
    assert _error(path, "grounding").startswith(f"{path}:1: field 'box'")


def test_bad_ve_label(folder):
    path = _write(folder, [{"image": "images/a.png", "hypothesis": "h", "label": "true"}])
    assert _error(path, "ve").startswith(f"{path}:1: field 'label': expected one of yes/no/maybe")


@pytest.mark.parametrize("answers", ["yes", [], ["yes", ""], ["yes", 3]])
def test_bad_vqa_answers(folder, answers):
    path = _write(folder, [{"image": "images/a.png", "question": "q?", "answers": answers}])
    assert _error(path, "vqa").startswith(f"{path}:1: field 'answers': expected a non-empty list")


def test_missing_captions(folder):
    path = _write(folder, [{"image": "images/a.png", "caption": "singular"}])
    assert _error(path, "caption").startswith(f"{path}:1: field 'captions': expected a non-empty list")


def test_bad_id(folder):
    path = _write(folder, [{"id": [1], "image": "images/a.png", "captions": ["x"]}])
    assert _error(path, "caption").startswith(
        f"{path}:1: field 'id': expected a non-empty string or an integer"
    )


# --- write_manifest round trip -------------------------------------------------------------------


def _samples() -> list[Sample]:
    return [
        Sample(uid="g/1", task="grounding", image=_image(seed=1), text="the dog", box=(1.5, 2.0, 10.0, 8.0)),
        Sample(uid="v1", task="ve", image=_image(seed=2), text="hyp", premise="prem", label="maybe"),
        Sample(uid="q1", task="vqa", image=_image(seed=3), text="what?", answers=["a", "a", "b"], label="a"),
        Sample(
            uid="c1", task="caption", image=_image(seed=4), captions=["one", "two"], meta={"split": "val"}
        ),
    ]


@pytest.mark.parametrize("index", range(4))
def test_round_trip(tmp_path, index):
    original = _samples()[index]
    path = write_manifest([original], tmp_path / "out" / "m.jsonl", tmp_path / "out" / "img")
    record = json.loads(path.read_text().splitlines()[0])
    assert not Path(record["image"]).is_absolute()
    (back,) = read_manifest(path, original.task)
    assert np.array_equal(np.asarray(back.image), np.asarray(original.image))
    for name in ("uid", "task", "text", "premise", "box", "label", "answers", "captions"):
        assert getattr(back, name) == getattr(original, name), name
    back.meta.pop("source")
    assert back.meta == original.meta


def test_write_manifest_uses_absolute_paths_outside_folder(tmp_path):
    path = write_manifest(_samples()[3:], tmp_path / "a" / "m.jsonl", tmp_path / "b")
    record = json.loads(path.read_text())
    assert Path(record["image"]).is_absolute()
    assert record["captions"] == ["one", "two"] and record["split"] == "val"
    assert len(list(read_manifest(path, "caption"))) == 1


def test_write_manifest_skips_non_json_meta_and_source(tmp_path):
    sample = _samples()[3]
    sample.meta = {"source": "x.tsv:3", "array": np.zeros(2), "ok": [1, 2]}
    path = write_manifest([sample], tmp_path / "m.jsonl", tmp_path / "img")
    record = json.loads(path.read_text())
    assert "source" not in record and "array" not in record and record["ok"] == [1, 2]


def test_write_manifest_rejects_incomplete_samples(tmp_path):
    with pytest.raises(RobustOFAError, match="field 'box'"):
        write_manifest([Sample(uid="x", task="grounding", image=_image())], tmp_path / "m.jsonl", tmp_path)
    with pytest.raises(RobustOFAError, match="field 'label'"):
        write_manifest([Sample(uid="x", task="ve", image=_image())], tmp_path / "m.jsonl", tmp_path)

"""Data-source specs: parsing every form, loading from each kind, and one-line errors for bad specs."""

from __future__ import annotations

from pathlib import Path

import pytest

from robustbench_ofa.data import synthetic as syn
from robustbench_ofa.data.manifest import write_manifest
from robustbench_ofa.data.sources import DataSource, load_samples, parse_source, parse_task_sources
from robustbench_ofa.data.tsv import encode_image_base64
from robustbench_ofa.errors import RobustOFAError

SCENE = syn.SceneConfig(image_size=32)


def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(RobustOFAError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(("spec", "expected"), [
    ("synthetic:downstream_test", DataSource("synthetic", "downstream_test")),
    ("synthetic:train:12", DataSource("synthetic", "train", None, 12)),
    ("tsv:/data/refcoco_val.tsv", DataSource("tsv", "/data/refcoco_val.tsv")),
    ("tsv:/data/ve.tsv:snli_ve", DataSource("tsv", "/data/ve.tsv", "snli_ve")),
    ("tsv:C:\\data\\ve.tsv", DataSource("tsv", "C:\\data\\ve.tsv")),
    ("manifest:/data/m.jsonl", DataSource("manifest", "/data/m.jsonl")),
    ("/data/x.tsv", DataSource("tsv", "/data/x.tsv")),
    ("rel/m.jsonl", DataSource("manifest", "rel/m.jsonl")),
])
def test_parse_every_form(spec, expected):
    assert parse_source(spec) == expected


def test_spec_round_trips_through_str():
    for spec in ("synthetic:train:12", "tsv:/d/ve.tsv:snli_ve", "manifest:/d/m.jsonl"):
        assert str(parse_source(spec)) == spec


@pytest.mark.parametrize(("spec", "fragment"), [
    ("", "empty spec"),
    ("synthetic:", "missing split"),
    ("synthetic:nope", "unknown synthetic split 'nope'"),
    ("synthetic:train:many", "sample count must be a non-negative integer, got 'many'"),
    ("tsv:", "missing path"),
    ("tsv:/d/ve.tsv:snlive", "unknown TSV format 'snlive'"),
    ("manifest:", "missing path"),
    ("hdf5:/d/x.h5", "unknown kind 'hdf5'"),
    ("/d/data.csv", "unknown kind '/d/data.csv'"),
])
def test_bad_specs_give_one_line_errors_naming_the_spec(spec, fragment):
    message = _error(parse_source, spec)
    assert fragment in message
    if spec:
        assert spec in message


def test_synthetic_loads_are_deterministic_and_sized():
    a = load_samples("synthetic:downstream_test", "vqa", 5, scene=SCENE)
    b = load_samples("synthetic:downstream_test:3", "vqa", None, scene=SCENE)
    assert len(a) == 5 and len(b) == 3
    assert [s.uid for s in a[:3]] == [s.uid for s in b]
    assert a[0].image.size == (32, 32)
    assert a[0].image.tobytes() == load_samples("synthetic:downstream_test", "vqa", 1, scene=SCENE)[0].image.tobytes()
    assert len(load_samples("synthetic:train:3", "ve", 10, scene=SCENE)) == 3  # the spec's count caps the limit


def test_tsv_source_reads_the_file_with_limit_and_format(tmp_path: Path):
    image = syn.generate("ve", "train", 1, SCENE)[0].image
    rows = [[str(i), "img", encode_image_base64(image), "there is a red square", "a premise", "entailment"]
            for i in range(4)]
    path = tmp_path / "ve.tsv"
    path.write_text("".join("\t".join(r) + "\n" for r in rows))
    samples = load_samples(f"tsv:{path}:snli_ve", "ve", 2)
    assert [s.uid for s in samples] == ["0", "1"] and samples[0].label == "yes"
    assert len(load_samples(str(path), "ve")) == 4
    message = _error(load_samples, f"tsv:{path}:refcoco", "ve")
    assert "is for task 'grounding'" in message


def test_tsv_source_reports_bad_rows_with_file_and_line(tmp_path: Path):
    path = tmp_path / "bad.tsv"
    path.write_text("1\timg\tnot-base64!!\thyp\tprem\tentailment\n")
    message = _error(load_samples, f"tsv:{path}", "ve")
    assert f"{path}:1" in message and "image" in message


def test_manifest_source_round_trip(tmp_path: Path):
    samples = syn.generate("grounding", "val", 3, SCENE)
    path = write_manifest(samples, tmp_path / "g.jsonl", tmp_path / "images")
    loaded = load_samples(f"manifest:{path}", "grounding", 2)
    assert [s.box for s in loaded] == [s.box for s in samples[:2]]
    assert _error(load_samples, f"manifest:{tmp_path / 'missing.jsonl'}", "grounding").endswith("manifest file not found")


def test_bad_task_and_limit():
    assert "unknown task 'nlvr'" in _error(load_samples, "synthetic:train", "nlvr")
    assert "limit must be a non-negative integer" in _error(load_samples, "synthetic:train", "ve", -1)


def test_task_prefixed_sources():
    out = parse_task_sources(["ve=tsv:/d/ve.tsv", "synthetic:downstream_train"], ["grounding", "ve"])
    assert out["ve"] == DataSource("tsv", "/d/ve.tsv")
    assert out["grounding"] == DataSource("synthetic", "downstream_train")
    assert parse_task_sources(["snli_ve=manifest:/m.jsonl"], ["ve"])["ve"].kind == "manifest"
    assert "no data source for task 'grounding'" in _error(parse_task_sources, ["ve=tsv:/d/ve.tsv"], ["grounding", "ve"])
    assert "given two sources" in _error(parse_task_sources, ["ve=tsv:/a.tsv", "ve=tsv:/b.tsv"], ["ve"])
    assert "not one of the run's tasks" in _error(parse_task_sources, ["vqa=tsv:/a.tsv"], ["ve"])
    assert "only one source may omit" in _error(parse_task_sources, ["synthetic:train", "synthetic:val"], ["ve"])

"""Answer sets of VQA-like tasks from files and from data (issue 12, item 1): safe loading, building from a
hand-written manifest whose answers the generator never makes, storing with the variant, and evaluation
that counts unanswerable samples as wrong and says how many."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import torch
from conftest import COLOURS, colour_samples
from PIL import Image

from attacks import AttackParams
from robustbench_ofa.cli import main
from robustbench_ofa.data.types import Sample
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.evaluation.config import EvalConfig, parse_eps_list
from robustbench_ofa.evaluation.outputs import compute, format_summary
from robustbench_ofa.evaluation.runner import Evaluator, LoadedVariant
from robustbench_ofa.evaluation.store import ResultsStore
from robustbench_ofa.tasks import get_task
from robustbench_ofa.tasks.answers import (
    answers_from_samples,
    load_answers,
    read_variant_answers,
    write_answers,
)
from robustbench_ofa.zoo.recipe import micro_recipe

#: rerun by CI under the most portable CPU kernels and 1 thread (scripts/ci_portable.py)
pytestmark = pytest.mark.kernels


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_answer_files_of_every_kind_load_and_nothing_else_does(tmp_path):
    (tmp_path / "a.txt").write_text("umbrella\n\n2 people\n yes \n")
    assert load_answers(tmp_path / "a.txt") == ["umbrella", "2 people", "yes"]
    (tmp_path / "a.json").write_text(json.dumps(["umbrella", "2 people"]))
    assert load_answers(tmp_path / "a.json") == ["umbrella", "2 people"]
    (tmp_path / "m.json").write_text(json.dumps({"no": 1, "yes": 0}))
    assert load_answers(tmp_path / "m.json") == ["yes", "no"]
    (tmp_path / "ans2label.pkl").write_bytes(pickle.dumps({"yes": 0, "no": 1, "2": 2}))  # OFA's format
    assert load_answers(tmp_path / "ans2label.pkl") == ["yes", "no", "2"]
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"yes": 0, "x": _Evil()}))
    with pytest.raises(RobustOFAError, match="refusing the global"):
        load_answers(tmp_path / "evil.pkl")
    for name, text, match in (("d.txt", "a\na\n", "listed twice"), ("e.json", '{"a": "b"}', "integer indices"),
                              ("f.json", '{"a": 0, "b": 2}', "indices must be 0..1"), ("g.json", "[1]", "JSON list"),
                              ("h.csv", "a", ".txt, .json or .pkl"), ("i.json", "{", "not a readable")):
        (tmp_path / name).write_text(text)
        with pytest.raises(RobustOFAError, match=match) as info:
            load_answers(tmp_path / name)
        assert "\n" not in str(info.value)
    with pytest.raises(RobustOFAError, match="no such file"):
        load_answers(tmp_path / "missing.txt")


def _vqa(uid: str, answers: list[str], label: str | None = None) -> Sample:
    return Sample(uid=uid, task="vqa", image=None, text="what is it?", answers=answers, label=label)


def test_an_answer_set_built_from_data_counts_each_human_answer_once_and_caps():
    samples = [_vqa("a", ["umbrella"] * 10), _vqa("b", ["2 people", "two people"]), _vqa("c", ["2 people"]),
               _vqa("d", [], label="zebra")]
    assert answers_from_samples(samples) == ["2 people", "umbrella", "two people", "zebra"]
    assert answers_from_samples(samples, max_answers=2) == ["2 people", "umbrella"]
    with pytest.raises(RobustOFAError, match="--max-answers"):
        answers_from_samples(samples, max_answers=0)


def test_out_of_set_references_use_the_best_in_set_answer_or_are_unanswerable(colour_model):
    _, task = colour_model
    vqa = get_task("vqa", task.tokenizer, 32, answers=["red", "blue"])
    s = _vqa("x", ["crimson", "red", "red", "blue"], label="crimson")
    assert vqa.answers[vqa.label_index(s)] == "red" and vqa.answerable(s)
    assert not vqa.answerable(_vqa("y", ["umbrella"]))


def test_variant_answer_sets_round_trip_and_are_checked(tmp_path):
    entry = write_answers(tmp_path, "vqa", ["umbrella", "2 people"])
    card = {"name": "v", "path": str(tmp_path), "answers": {"vqa": entry}}
    assert entry["n"] == 2 and read_variant_answers(card, "vqa") == ["umbrella", "2 people"]
    assert read_variant_answers(card, "ve") is None and read_variant_answers({"path": str(tmp_path)}, "vqa") is None
    (tmp_path / entry["file"]).write_text('["umbrella"]\n')
    with pytest.raises(RobustOFAError, match="changed since the variant was tuned"):
        read_variant_answers(card, "vqa")


def test_evaluation_counts_unanswerable_samples_wrong_and_reports_them(colour_model, tmp_path):
    model, task = colour_model
    samples = colour_samples(12, 3)
    for s in samples[:3]:  # answers the colour model's set cannot give: never a crash, counted wrong
        s.answers, s.label = ["umbrella"], "umbrella"
    entry = write_answers(tmp_path, "vqa", sorted(COLOURS))
    info = {"name": "c", "path": str(tmp_path), "answers": {"vqa": entry}}
    cfg = EvalConfig(attacks=["fgsm"], tasks=["vqa"], eps=parse_eps_list("8/255"), n_samples=12, batch_size=6,
                     params=AttackParams(steps=1), beam=1, transfer=False, sanity_samples=2)
    store = ResultsStore(tmp_path / "results.sqlite")
    store.bind(cfg.settings())
    Evaluator(cfg, store, lambda n: LoadedVariant(n, model, task.tokenizer, 32, info), lambda t, n: samples[:n],
              progress=False).run(["c"])
    tables = compute(store)
    clean = tables["clean"].iloc[0]
    wrong = store.frame("clean").set_index("uid").correct
    assert all(wrong[s.uid] == 0 for s in samples[:3]) and clean.n == 12
    checks = tables["checks"].set_index("name")
    assert checks.loc["unanswerable", "value"] == 3 and checks.loc["answer_set_size", "value"] == len(COLOURS)
    assert "the set the variant was tuned with" in checks.loc["answer_set_size", "detail"]
    assert "3 of 12 samples have no answer in the answer set" in format_summary(tables)
    # --answers FILE overrides the variant's set for every variant; a bad file is refused by the config
    (tmp_path / "two.txt").write_text("red\nblue\n")
    cfg2 = EvalConfig(**{**cfg.__dict__, "answers": str(tmp_path / "two.txt")})
    cfg2.validate()
    assert cfg2.settings()["answers"]["file"].endswith("two.txt") and "answers" not in cfg.settings()
    store2 = ResultsStore(tmp_path / "r2.sqlite")
    store2.bind(cfg2.settings())
    Evaluator(cfg2, store2, lambda n: LoadedVariant(n, model, task.tokenizer, 32, info), lambda t, n: samples[:n],
              progress=False).run(["c"])
    checks2 = compute(store2)["checks"].set_index("name")
    assert checks2.loc["answer_set_size", "value"] == 2 and "--answers" in checks2.loc["answer_set_size", "detail"]
    (tmp_path / "bad.txt").write_text("red\nred\n")
    with pytest.raises(RobustOFAError, match="listed twice"):
        EvalConfig(**{**cfg.__dict__, "answers": str(tmp_path / "bad.txt")}).validate()


def _image(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (23, 37, 3), dtype=np.uint8), "RGB")  # an odd size


@pytest.fixture
def micro(monkeypatch, tmp_path_factory):
    recipe = micro_recipe()
    monkeypatch.setattr("robustbench_ofa.zoo.recipe.default_recipe", lambda: recipe)
    monkeypatch.setattr("robustbench_ofa.zoo.recipe.EMBEDDED", recipe)  # what default_recipe() reads elsewhere
    return tmp_path_factory.getbasetemp() / "micro-home"


def test_tuning_on_a_hand_written_manifest_builds_stores_and_evaluates_with_its_answer_set(micro, tmp_path, capsys):
    (tmp_path / "img").mkdir()
    words = ["umbrella", "2 people", "giraffe", "umbrella", "2 people", "kite"]
    lines = []
    for i, w in enumerate(words):
        _image(i).save(tmp_path / "img" / f"{i}.png")
        lines.append(json.dumps({"id": f"q{i}", "image": f"img/{i}.png", "question": "what is this?",
                                 "answers": [w]}))  # one answer per question
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "v"
    rc = main(["train", "tune", "--base", "micro-base", "--method", "bitfit", "--task", "vqa", "--data",
               f"manifest:{tmp_path / 'm.jsonl'}", "--eval-data", f"manifest:{tmp_path / 'm.jsonl'}",
               "--max-answers", "3", "--out", str(out), "--home", str(micro), "--max-steps", "2",
               "--batch-size", "2", "--quiet"])
    assert rc == 0
    assert "1 of 6 training samples have no answer in the answer set (3 answers)" in capsys.readouterr().out
    card = json.loads((out / "card.json").read_text())
    assert card["answers"]["vqa"]["n"] == 3
    assert json.loads((out / "answers-vqa.json").read_text()) == ["umbrella", "2 people", "giraffe"]
    res = tmp_path / "res"
    rc = main(["evaluate", "--attack", "fgsm", "--model", str(out), "--task", "vqa", "--data",
               f"manifest:{tmp_path / 'm.jsonl'}", "--n-samples", "6", "--eps", "8/255", "--no-transfer",
               "--out", str(res), "--home", str(micro), "--report", "md", "--quiet"])
    assert rc == 0
    checks = {c["name"]: c for c in json.loads((res / "summary.json").read_text())["checks"]}
    assert checks["unanswerable"]["value"] == 1 and "kite" not in checks["answer_set_size"]["detail"]
    assert "1 of 6 samples have no answer in the answer set" in (res / "report.md").read_text()


def test_chunked_scoring_equals_one_call_in_scores_and_gradients(colour_model):
    """Large answer sets are scored in chunks recomputed in backward: same scores, same image gradient."""
    from robustbench_ofa.models.generation import score_candidates

    model, task = colour_model
    batch = task.collate(colour_samples(3, 5))
    g = torch.Generator().manual_seed(0)
    candidates = [torch.randint(4, task.tokenizer.vocab_size, (int(n),), generator=g).tolist()
                  for n in torch.randint(1, 4, (37,), generator=g)]

    def run(chunk):
        x = batch.images.clone().requires_grad_(True)
        scores = score_candidates(model, task.encode(model, batch.input_ids, x), candidates, chunk=chunk)
        (scores * torch.linspace(-1, 1, scores.numel()).view_as(scores)).sum().backward()
        return scores.detach(), x.grad

    (s1, g1), (s5, g5) = run(None), run(5)
    assert torch.allclose(s1, s5, atol=1e-5) and torch.allclose(g1, g5, atol=1e-6)
    assert g1.abs().sum() > 0

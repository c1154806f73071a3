"""Closed-answer metrics that are right on real data, and flags for runs whose numbers cannot mean anything.

- VQA: single-answer data (GQA-/CLEVR-style) is scored by normalised exact match, VQAv2-style data (>= 3
  human answers) by min(#matches / 3, 1), OFA's TSVs by their stored soft scores, and a manifest may name
  the rule (``answer_metric``). The data here is a hand-written manifest over hand-drawn images of odd
  sizes whose answers are not in the generated benchmark's vocabulary.
- ``clean-at-chance``: clean accuracy at or below 1 / #answers; ``non-finite-outputs``: NaN/inf logits.
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import MODEL_SEED, colour_samples
from PIL import Image, ImageDraw

from attacks import AttackParams
from robustbench_ofa.data.manifest import read_manifest, write_manifest
from robustbench_ofa.data.synthetic import VQA_ANSWERS
from robustbench_ofa.data.tsv import encode_image_base64, read_tsv
from robustbench_ofa.data.types import Sample
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.evaluation import aggregate as agg
from robustbench_ofa.evaluation.config import EvalConfig, parse_eps_list
from robustbench_ofa.evaluation.outputs import compute, format_summary, write_aggregates
from robustbench_ofa.evaluation.runner import Evaluator, LoadedVariant
from robustbench_ofa.evaluation.store import ResultsStore
from robustbench_ofa.metrics import normalize_vqa_answer, vqa_answer_metric, vqa_credit
from robustbench_ofa.tasks import get_task

#: rerun by CI under the most portable CPU kernels and 1 thread (scripts/ci_portable.py)
pytestmark = pytest.mark.kernels

# -- a micro OFA answering in words the generated benchmark never uses ----------------------------------
HUES = {"crimson": (210, 30, 40), "jade": (30, 190, 90), "cobalt": (40, 60, 210), "amber": (235, 200, 40)}
QUESTION = "which hue does the patch have?"


def _hue_image(hue: str, width: int, height: int, box: tuple[int, int, int, int], grey: int) -> Image.Image:
    img = Image.new("RGB", (width, height), (grey, grey, grey))
    ImageDraw.Draw(img).rectangle(box, fill=HUES[hue])
    return img


def _training_samples(n: int, seed: int) -> list[Sample]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        hue = rng.choice(sorted(HUES))
        w, h = rng.randint(24, 80), rng.randint(24, 80)
        x0, y0 = rng.randint(0, w // 2), rng.randint(0, h // 2)
        box = (x0, y0, x0 + rng.randint(w // 3, w // 2), y0 + rng.randint(h // 3, h // 2))
        out.append(Sample(uid=f"hue-{i}", task="vqa", image=_hue_image(hue, w, h, box, rng.randint(0, 60)),
                          text=QUESTION, answers=[hue]))
    return out


@pytest.fixture(scope="module")
def hue_model(micro_tokenizer):
    """(model, task): a micro OFA trained (a few seconds) to name the patch's hue, one answer per sample."""
    from robustbench_ofa.models import OFAConfig, OFAModel
    from robustbench_ofa.training.config import TrainConfig
    from robustbench_ofa.training.loop import train

    cfg = OFAConfig(vocab_size=micro_tokenizer.vocab_size, d_model=32, encoder_layers=1, decoder_layers=1,
                    encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                    resnet_layers=[1, 1, 1], resnet_base_planes=8, max_position_embeddings=64, dropout=0.0)
    torch.manual_seed(MODEL_SEED)
    model = OFAModel(cfg)
    task = get_task("vqa", micro_tokenizer, 32, answers=sorted(HUES))
    train(model, {"vqa": task}, {"vqa": _training_samples(512, 0)},
          TrainConfig(lr=5e-3, batch_size=32, max_steps=200, num_threads=1, seed=MODEL_SEED), progress=False)
    return model.eval(), task


# The hand-written manifest: one answer per question, spelt as people write them (case, articles, periods);
# the last two lines' answers are not the patch's hue (annotation errors: a model that sees right is wrong).
IMAGES = {  # file: (hue, width, height, patch box, background grey)
    "a.png": ("crimson", 37, 23, (3, 2, 20, 15), 10),
    "b.png": ("jade", 53, 71, (20, 30, 45, 60), 40),
    "c.png": ("cobalt", 29, 29, (0, 0, 14, 14), 0),
    "d.png": ("amber", 101, 47, (60, 5, 95, 40), 25),
    "e.png": ("crimson", 64, 40, (30, 10, 60, 35), 55),
    "f.png": ("jade", 33, 57, (5, 5, 25, 30), 15),
    "g.png": ("cobalt", 77, 31, (40, 3, 70, 25), 30),
    "h.png": ("amber", 45, 45, (10, 20, 35, 42), 5),
    "i.png": ("crimson", 25, 61, (2, 30, 22, 55), 45),
    "j.png": ("jade", 90, 26, (5, 2, 40, 22), 20),
    "k.png": ("cobalt", 41, 83, (10, 10, 35, 45), 50),
    "l.png": ("amber", 58, 34, (25, 4, 52, 30), 35),
    "m.png": ("cobalt", 49, 21, (20, 2, 44, 18), 10),
    "n.png": ("jade", 31, 43, (3, 10, 26, 38), 40),
}
MANIFEST = """\
{"id": "q-a", "image": "img/a.png", "question": "Which hue does the patch have?", "answers": ["Crimson"]}
{"id": "q-b", "image": "img/b.png", "question": "which hue does the patch have", "answers": ["jade."]}
{"id": "q-c", "image": "img/c.png", "question": "which hue does the patch have?", "answers": ["the cobalt"]}
{"id": "q-d", "image": "img/d.png", "question": "which hue does the patch have?", "answers": ["AMBER"]}
{"id": "q-e", "image": "img/e.png", "question": "which hue does the patch have?", "answers": ["crimson"]}
{"id": "q-f", "image": "img/f.png", "question": "which hue does the patch have?", "answers": ["Jade"]}

{"id": "q-g", "image": "img/g.png", "question": "which hue does the patch have?", "answers": ["cobalt"]}
{"id": "q-h", "image": "img/h.png", "question": "which hue does the patch have?", "answers": ["amber"]}
{"id": "q-i", "image": "img/i.png", "question": "which hue does the patch have?", "answers": ["crimson"]}
{"id": "q-j", "image": "img/j.png", "question": "which hue does the patch have?", "answers": ["jade"]}
{"id": "q-k", "image": "img/k.png", "question": "which hue does the patch have?", "answers": ["Cobalt."]}
{"id": "q-l", "image": "img/l.png", "question": "which hue does the patch have?", "answers": ["an amber"]}
{"id": "q-m", "image": "img/m.png", "question": "which hue does the patch have?", "answers": ["amber"]}
{"id": "q-n", "image": "img/n.png", "question": "which hue does the patch have?", "answers": ["crimson"]}
"""


def _manifest(folder: Path, text: str = MANIFEST) -> Path:
    (folder / "img").mkdir(exist_ok=True)
    for name, (hue, w, h, box, grey) in IMAGES.items():
        _hue_image(hue, w, h, box, grey).save(folder / "img" / name)
    path = folder / "hand.jsonl"
    path.write_text(text, encoding="utf-8")
    return path


def _one_line_error(path: Path, task: str = "vqa") -> str:
    with pytest.raises(RobustOFAError) as info:
        list(read_manifest(path, task))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_single_answer_manifest_scores_its_true_accuracy(hue_model, tmp_path):
    model, task = hue_model
    samples = list(read_manifest(_manifest(tmp_path), "vqa"))
    assert len(samples) == 14 and {s.image.size for s in samples} >= {(37, 23), (101, 47), (25, 61)}
    assert all(len(s.answers) == 1 for s in samples)
    preds = task.predict(model, task.collate(samples))
    # the truth, by hand: the predicted word is the written answer once case, articles and periods are gone
    truth = [p.value == s.answers[0].lower().removesuffix(".").split()[-1] for p, s in zip(preds, samples)]
    true_acc = sum(truth) / len(truth)
    assert true_acc >= 0.75  # the model works: most hues are named right
    metrics = task.metrics(preds, samples)
    assert metrics["accuracy"] == pytest.approx(true_acc)  # was 0.0: min(1/3, 1) never reached 0.5
    assert metrics["vqa_accuracy"] == pytest.approx(true_acc)  # was true_acc / 3
    assert [p.correct for p in preds] == truth
    assert {p.score for p in preds} <= {0.0, 1.0}


@pytest.fixture
def vqa(micro_tokenizer):
    return get_task("vqa", micro_tokenizer, 32)


def test_three_or_more_answers_keep_the_consensus_rule(vqa, tmp_path):
    lines = [
        {"id": "one", "image": "img/a.png", "question": "q?", "answers": ["crimson"]},
        {"id": "two", "image": "img/a.png", "question": "q?", "answers": ["crimson", "jade"]},
        {"id": "three", "image": "img/a.png", "question": "q?", "answers": ["jade", "crimson", "crimson"]},
        {"id": "ten", "image": "img/a.png", "question": "q?", "answers": ["crimson"] * 2 + ["jade"] * 8},
    ]
    samples = {s.uid: s for s in read_manifest(_manifest(tmp_path, _jsonl(lines)), "vqa")}
    credit = {uid: (p.score, p.correct) for uid, s in samples.items() for p in [vqa.judge("crimson", s)]}
    assert credit["one"] == (1.0, True)  # exact match (was 1/3, wrong)
    assert credit["two"] == (1.0, True)  # exact match against any of the two answers
    assert credit["three"][0] == pytest.approx(2 / 3) and credit["three"][1]  # min(2/3, 1) as before
    assert credit["ten"][0] == pytest.approx(2 / 3) and credit["ten"][1]
    jade = vqa.judge("jade", samples["three"])
    assert jade.score == pytest.approx(1 / 3) and not jade.correct  # one human of three: not correct
    assert [vqa_answer_metric(s.answers) for s in samples.values()] == ["exact", "exact", "vqa", "vqa"]
    # the generated benchmark's shape (ten identical answers): 1 or 0, exactly as before
    gen = Sample(uid="g", task="vqa", image=Image.new("RGB", (8, 8)), text="q?", answers=["red"] * 10, label="red")
    assert vqa_credit("red", gen.answers) == (1.0, True) and vqa_credit("blue", gen.answers) == (0.0, False)


def _jsonl(lines: list[dict]) -> str:
    return "".join(json.dumps(x) + "\n" for x in lines)


def test_answer_metric_is_respected_round_trips_and_is_checked(vqa, tmp_path):
    lines = [
        {"id": "forced-vqa", "image": "img/a.png", "question": "q?", "answers": ["crimson"], "answer_metric": "vqa"},
        {"id": "forced-exact", "image": "img/a.png", "question": "q?", "answers": ["jade", "crimson", "crimson"],
         "answer_metric": "Exact"},
    ]
    samples = list(read_manifest(_manifest(tmp_path, _jsonl(lines)), "vqa"))
    forced_vqa = vqa.judge("crimson", samples[0])
    assert forced_vqa.score == pytest.approx(1 / 3) and not forced_vqa.correct
    assert (vqa.judge("jade", samples[1]).score, vqa.judge("jade", samples[1]).correct) == (1.0, True)
    assert [s.meta["answer_metric"] for s in samples] == ["vqa", "exact"]
    # written back by write_manifest, read back the same
    again = list(read_manifest(write_manifest(samples, tmp_path / "out" / "m.jsonl", tmp_path / "out" / "im"), "vqa"))
    assert [s.meta.get("answer_metric") for s in again] == ["vqa", "exact"]
    assert [vqa.manifest_record(s) for s in again] == [vqa.manifest_record(s) for s in samples]
    # a bad value: one line naming the file:line, the field and the expected values
    bad = lines + [{"image": "img/a.png", "question": "q?", "answers": ["jade"], "answer_metric": "fuzzy"}]
    path = _manifest(tmp_path, _jsonl(bad))
    assert _one_line_error(path) == f"{path}:3: field 'answer_metric': expected one of vqa/exact, got 'fuzzy'"
    path = _manifest(tmp_path, _jsonl([{**lines[0], "answer_metric": 3}]))
    assert _one_line_error(path) == f"{path}:1: field 'answer_metric': expected one of vqa/exact, got 3"


def test_tsv_answers_are_credited_with_their_soft_scores(vqa, tmp_path):
    b64 = encode_image_base64(_hue_image("jade", 19, 27, (2, 2, 12, 12), 0))
    tsv = tmp_path / "vqa.tsv"
    tsv.write_text("\t".join(["q1", "im", "what animal?", "0.6|!+cat&&1.0|!+dog&&0.3|!+cow", "", b64]) + "\n",
                   encoding="utf-8")
    (sample,) = read_tsv(tsv, "vqa")
    got = {a: (vqa.judge(a, sample).score, vqa.judge(a, sample).correct)
           for a in ("dog", "cat", "cow", "horse")}
    # OFA's own credit, the stored score (the old reconstruction gave cat 2/3, cow 1/3); correct as before
    assert got == {"dog": (1.0, True), "cat": (0.6, True), "cow": (0.3, False), "horse": (0.0, False)}
    assert vqa_answer_metric(sample.answers, sample.meta["answer_scores"]) == "soft"
    # through a manifest and back: the scores travel with the sample and give the same credit
    path = write_manifest([sample], tmp_path / "m" / "m.jsonl", tmp_path / "m" / "img")
    assert json.loads(path.read_text())["answer_scores"] == {"cat": 0.6, "dog": 1.0, "cow": 0.3}
    (back,) = read_manifest(path, "vqa")
    assert {a: (vqa.judge(a, back).score, vqa.judge(a, back).correct) for a in got} == got
    record = json.loads(path.read_text())
    record["answer_scores"] = {"cat": 1.5}
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    assert _one_line_error(path) == (f"{path}:1: field 'answer_scores': expected an object mapping answers to "
                                     "scores in [0, 1], got {'cat': 1.5}")


def test_exact_match_normalises_like_the_vqa_evaluation():
    assert vqa_credit("two", ["2"]) == (1.0, True)
    assert vqa_credit("T-shirt", ["t shirt"]) == (1.0, True)
    assert vqa_credit("a dog", ["Dog."]) == (1.0, True)
    assert vqa_credit("cat", ["dog"]) == (0.0, False)
    assert normalize_vqa_answer("An Amber") == "amber"
    with pytest.raises(ValueError, match="expected one of vqa/exact"):
        vqa_credit("x", ["x"], metric="fuzzy")


# -- run-level flags --------------------------------------------------------------------------------------
def _config(**kw) -> EvalConfig:
    base = dict(attacks=["pgd"], tasks=["vqa"], eps=parse_eps_list("16/255"), n_samples=24, batch_size=12,
                params=AttackParams(steps=2), beam=1, transfer=False, sanity_samples=2)
    base.update(kw)
    return EvalConfig(**base)


def _run(model, task, samples, path: Path, name: str = "v") -> ResultsStore:
    cfg = _config(n_samples=len(samples))
    store = ResultsStore(path / "results.sqlite")
    store.bind(cfg.settings())
    ev = Evaluator(cfg, store, lambda n: LoadedVariant(n, model, task.tokenizer, 32), lambda t, n: samples[:n],
                   progress=False)
    ev.run([name])
    return store


def test_a_normal_run_raises_neither_flag(colour_model, tmp_path):
    model, task = colour_model
    store = _run(model, task, colour_samples(12, 11), tmp_path)
    tables = compute(store)
    assert tables["clean"].acc.iloc[0] > 0.9
    assert not {"clean-at-chance", "non-finite-outputs"} & set(tables["flags"].flag)
    checks = store.frame("checks").set_index("name").value
    assert checks["chance_level"] == pytest.approx(1 / len(VQA_ANSWERS)) and checks["nonfinite_outputs"] == 0.0


def test_a_broken_model_is_flagged_in_the_summary_and_the_report(colour_model, tmp_path):
    """Every weight zero: the same answer for every input, never a colour (the answer set is the generated
    benchmark's 22 answers), so clean accuracy is 0 %; finite outputs, so only ``clean-at-chance``."""
    model, task = colour_model
    broken = copy.deepcopy(model)
    with torch.no_grad():
        for p in broken.parameters():
            p.zero_()
    store = _run(broken, task, colour_samples(12, 5), tmp_path)
    tables = write_aggregates(store, tmp_path, {"command": "test"})
    assert tables["clean"].acc.iloc[0] == 0.0
    flags = tables["flags"]
    (detail,) = flags[flags.flag == "clean-at-chance"].detail
    assert detail.startswith("clean accuracy 0.0% [95% CI 0.0%, 24.")
    assert "on n = 12 is at or below chance 4.5%" in detail
    assert "non-finite-outputs" not in set(flags.flag)
    assert "v vqa: clean-at-chance: clean accuracy 0.0%" in format_summary(tables)
    _assert_in_reports(tmp_path, "clean-at-chance")


def _assert_in_reports(results_dir: Path, flag: str) -> None:
    from reports.build import load_report
    from reports.html import render
    from reports.markdown import render_markdown

    report = load_report(results_dir, with_figures=False)
    assert flag in render_markdown(report)
    assert flag in render(report)


def test_clean_at_chance_rule_by_hand():
    def flags(k: int, n: int, chance: float) -> list[str]:
        clean = {"variant": ["v"] * n, "task": ["ve"] * n, "uid": [str(i) for i in range(n)],
                 "correct": [1] * k + [0] * (n - k)}
        checks = pd.DataFrame([dict(variant="v", task="ve", name="chance_level", value=chance, detail="")])
        res = pd.DataFrame([dict(variant="v", task="ve", norm="linf", eps_label="1/255", eps=1 / 255, attack="pgd",
                                 uid="0", status="clean-wrong", clean_correct=0, adv_correct=0, first_grad=None)])
        return list(agg.validity_flags(res, pd.DataFrame(clean), checks).flag)

    assert flags(0, 3, 1 / 3) == ["clean-at-chance"]
    assert flags(1, 3, 1 / 3) == ["clean-at-chance"]  # at chance
    assert flags(2, 3, 1 / 3) == []
    assert flags(34, 100, 1 / 3) == []
    assert flags(0, 200, 1 / 3129) == ["clean-at-chance"]  # a VQAv2-sized answer set: 0 % still flags


def test_nan_weights_are_flagged(colour_model, tmp_path):
    model, task = colour_model
    nan = copy.deepcopy(model)
    with torch.no_grad():
        for p in nan.parameters():
            p.fill_(float("nan"))
    store = _run(nan, task, colour_samples(8, 3), tmp_path, name="nan")
    tables = write_aggregates(store, tmp_path, {"command": "test"})
    flags = tables["flags"]
    (detail,) = flags[flags.flag == "non-finite-outputs"].detail
    assert detail.startswith("4 of 4 checked samples give NaN/inf losses or logits")
    assert "nan vqa: non-finite-outputs: 4 of 4" in format_summary(tables)
    _assert_in_reports(tmp_path, "non-finite-outputs")

"""Tasks: collation (OFA instructions, bin targets), prediction/judging, closed-answer logits."""

from __future__ import annotations

import pytest
import torch

from robustbench_ofa.data import synthetic as syn
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.tasks import get_task


@pytest.fixture
def tok(task_tok):
    return task_tok


@pytest.fixture
def model(task_model):
    return task_model


def test_grounding_targets_are_the_box_bins_and_decode_back(tok):
    task = get_task("grounding", tok, 64)
    s = syn.generate("grounding", "train", 1, syn.SceneConfig(image_size=64))[0]
    batch = task.collate([s])
    assert tok.decode(batch.input_ids[0]).startswith(' which region does the text "')
    ids = batch.targets[0, :4].tolist()
    assert all(tok.is_bin(i) for i in ids) and batch.targets[0, 4] == tok.eos_token_id
    box = task.tokens_to_box(ids, s)
    assert max(abs(a - b) for a, b in zip(box, s.box)) <= 64 / 99  # one bin of quantisation
    assert task.judge(box, s).correct


@pytest.mark.parametrize("name", ["grounding", "ve", "vqa", "caption"])
def test_every_task_predicts_and_has_a_loss(tok, model, name):
    task = get_task(name, tok, 64, beam=2)
    samples = syn.generate(name, "train", 3, syn.SceneConfig(image_size=64))
    if name == "caption":
        task.set_corpus(samples)
    batch = task.collate(samples)
    preds = task.predict(model, batch)
    assert len(preds) == 3 and all(isinstance(p.correct, bool) for p in preds)
    loss = task.loss(model, batch)
    assert loss.shape == (3,) and torch.isfinite(loss).all()
    if name == "grounding":
        assert all(len(p.value) == 4 for p in preds)
    if name == "caption":
        assert all("<bin_" not in p.value for p in preds)


def test_closed_answer_logits_match_predictions_and_reject_unknown_answers(tok, model):
    task = get_task("ve", tok, 64)
    samples = syn.generate("ve", "train", 4, syn.SceneConfig(image_size=64))
    batch = task.collate(samples)
    logits = task.logits(model, batch.input_ids, batch.images)
    assert logits.shape == (4, 3)
    assert [task.answers[i] for i in logits.argmax(-1)] == [p.value for p in task.predict(model, batch)]
    samples[0].label = "perhaps"
    with pytest.raises(RobustOFAError, match="unknown SNLI-VE label 'perhaps'"):
        task.labels(samples)
    with pytest.raises(RobustOFAError, match="unknown task 'nlvr'"):
        get_task("nlvr", tok, 64)

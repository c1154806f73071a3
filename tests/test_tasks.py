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


def test_a_caption_attack_succeeds_exactly_below_its_share_of_the_clean_cider():
    """Captions have no right or wrong answer under attack: an attack succeeds when CIDEr-D falls below
    ``(1 - drop)`` x the clean caption's CIDEr-D, the line itself still counting as correct. The evaluator
    (``adversarial_correct``) and the text attacks' goal (``text_goal``) must draw the same line, on
    scores alone (not the clean judgement's ``correct_threshold``)."""
    from robustbench_ofa.data.types import Sample
    from robustbench_ofa.tasks.base import Prediction
    from robustbench_ofa.tasks.caption import Captioning

    task = Captioning.__new__(Captioning)  # the rules read no tokenizer or model
    task._cider = None

    def kept(score: float, clean: float, drop: float = 0.5) -> bool:
        return task.adversarial_correct(Prediction("a caption", score, score >= task.correct_threshold), clean,
                                        drop)

    # clean 2.0, drop 0.5: the line is 1.0
    assert [kept(s, 2.0) for s in (2.5, 2.0, 1.0001, 1.0, 0.9999, 0.0)] == [True, True, True, True, False, False]
    assert kept(0.7, 1.2)  # judged wrong clean (below 1.0) yet above 0.6: the attack failed
    assert not kept(1.5, 4.0)  # judged right clean (above 1.0) yet below 2.0: the attack succeeded
    assert not kept(1.999, 2.0, drop=0.0) and kept(2.0, 2.0, drop=0.0)  # no drop allowed: any loss breaks it
    assert kept(0.0, 2.0, drop=1.0)  # all of it allowed: nothing breaks it

    refs = [["a red circle left of a blue square", "a red circle next to a blue square"],
            ["two green triangles above a yellow cross"], ["a small white diamond"], ["a large black circle"]]
    task.set_corpus([Sample(uid=f"c{i}", task="caption", image=None, captions=r) for i, r in enumerate(refs)])
    sample = Sample(uid="c0", task="caption", image=None, captions=refs[0])
    clean = task.judge("a red circle left of a blue square", sample).score
    partial = task.judge("a red circle", sample).score
    assert clean > partial > 0 and task.judge("two green triangles", sample).score == 0.0
    # the goal on the same captions: the unchanged caption is no success, an unrelated one is
    assert task.text_goal("a red circle left of a blue square", sample, clean, 0.5) == (False, 0.0)
    assert task.text_goal("two green triangles", sample, clean, 0.5) == (True, 1.0)
    # the partial caption on both sides of the line: clean scores that put the line just above, exactly at
    # and just below its CIDEr-D; the search's verdict is the negation of the evaluator's every time
    for clean_score, success in ((2 * partial * 1.001, True), (2 * partial, False), (2 * partial * 0.999, False)):
        won, score = task.text_goal("a red circle", sample, clean_score, 0.5)
        assert won is success
        assert won is not kept(partial, clean_score)
        assert score == pytest.approx(1 - partial / clean_score)
    assert task.text_goal("a red circle", sample, 0.0, 0.5) == (False, 0.0)  # nothing to lose

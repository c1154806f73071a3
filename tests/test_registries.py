"""Tests parametrised over the registries (timm style): a new attack or task is tested without editing this file.

* every registered attack x every registered task: it runs (image attacks stay inside their budget and
  the image box, text attacks inside their word budget) or it is refused before any work with one line;
* every registered task: collate, predict, judge, metrics, the adversarial-success rule, its text-attack
  interface and a manifest round trip of its own fields.
The model is a small randomised OFA: these tests check that the machinery works on each pair, not that
an attack is strong (tests/test_attacks.py does that on a trained model).
"""

from __future__ import annotations

import pytest
import torch

from attacks import ATTACKS, AttackParams, Threat
from attacks.views import TaskView
from robustbench_ofa.data import synthetic as syn
from robustbench_ofa.data.transforms import normalize
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.tasks import TASK_REGISTRY, get_task, task_class, task_names

#: rerun by CI under the most portable CPU kernels and 1 thread (scripts/ci_portable.py)
pytestmark = pytest.mark.kernels

SIZE = 32
N = 2
#: tiny budgets: each pair must run in about a second on two cores
PARAMS = AttackParams.of(steps=2, queries=8, cw_steps=2, text_queries=12, text_batch=8, co_eps="8/255")


@pytest.fixture
def tok(task_tok):
    return task_tok


@pytest.fixture
def model(task_model):
    return task_model


def _samples(task_name: str, n: int = N):
    return syn.generate(task_name, "train", n, syn.SceneConfig(image_size=SIZE))


def _task(tok, name):
    return get_task(name, tok, SIZE, beam=1)


def test_the_registries_list_what_the_modules_register():
    assert set(task_names()) == set(TASK_REGISTRY.names()) and len(task_names()) >= 4
    assert {s.threat for s in (ATTACKS.get(n) for n in ATTACKS)} == set(Threat)
    for name in ATTACKS:
        spec = ATTACKS.get(name)
        assert spec.name == name and spec.display and spec.description
        assert (spec.recipe is not None) == (spec.threat is Threat.TEXT)


@pytest.mark.parametrize("task_name", task_names())
@pytest.mark.parametrize("attack", ATTACKS.names())
def test_every_attack_runs_or_is_refused_on_every_task(model, tok, attack, task_name):
    spec, task = ATTACKS.get(attack), _task(tok, task_name)
    why = spec.refusal(task)
    if why is not None:  # refused: one line naming the attack and the task, raised by the pre-flight check
        assert "\n" not in why and attack in why and task_name in why
        with pytest.raises(RobustOFAError, match="needs a task|applies to"):
            spec.check_task(task)
        return
    samples = _samples(task_name)
    task.prepare(samples)
    batch = task.collate(samples)
    seeds = list(range(len(samples)))
    if spec.modality == "image":
        from attacks import run_attack

        eps = 0.5 if spec.threat is Threat.L2 else 8 / 255
        view = TaskView(model, task, batch)
        if spec.needs_sources:  # crafted on other variants: one line without them, then on a source
            with pytest.raises(RobustOFAError, match="twins"):
                run_attack(attack, view, batch.images, eps, PARAMS, seeds)
            view.sources = [TaskView(model, task, batch)]
        res = run_attack(attack, view, batch.images, eps, PARAMS, seeds)
        assert res.adv.shape == batch.images.shape and torch.isfinite(res.adv).all()
        assert float(res.adv.min()) >= 0 and float(res.adv.max()) <= 1
        delta = (res.adv - batch.images).flatten(1)
        size = delta.norm(dim=1) if spec.threat is Threat.L2 else delta.abs().max(1).values
        if spec.bounded:
            assert float(size.max()) <= eps + 1e-5
        preds = task.predict(model, batch, images=res.adv)
    elif spec.modality == "text":
        from attacks.text.engine import run_text_attack
        from attacks.text.options import TextOptions

        words = PARAMS.opt(TextOptions).words
        outcomes = run_text_attack(attack, model, task, samples, batch.images, PARAMS.opt(TextOptions).budget(),
                                   seeds, [1.0] * len(samples))
        assert len(outcomes) == len(samples)
        assert all(o.words_changed <= words and o.status in ("successful", "failed", "skipped") for o in outcomes)
        preds = task.predict(model, batch)
    else:
        joint = spec.runner(model, task, batch, 8 / 255, PARAMS, seeds, [1.0] * len(samples), 0.5)
        assert float((joint.adv_images - batch.images).abs().max()) <= 8 / 255 + 1e-5
        preds = task.predict(model, batch, images=joint.adv_images)
    assert len(preds) == len(samples)


@pytest.mark.parametrize("task_name", task_names())
def test_every_task_collates_predicts_judges_and_scores(model, tok, task_name):
    task = _task(tok, task_name)
    samples = _samples(task_name, 3)
    task.prepare(samples)
    batch = task.collate(samples)
    assert batch.input_ids.shape[0] == 3 and batch.images.shape == (3, 3, SIZE, SIZE)
    assert (batch.targets == tok.eos_token_id).any(dim=1).all()  # every target ends in eos
    preds = task.predict(model, batch)
    for p, s in zip(preds, samples):
        again = task.judge(p.value, s)
        assert again.correct == p.correct and again.score == pytest.approx(p.score)
        assert isinstance(task.describe(p.value), str)
        # an unchanged prediction is never an adversarial success
        assert task.adversarial_correct(p, p.score, 0.5) or not p.correct
    metrics = task.metrics(preds, samples)
    assert task.main_metric in metrics and all(0 <= v <= 1e9 for v in metrics.values())
    logits, _ = task.attack_logits(model, batch.input_ids, batch.images, batch.targets)
    assert logits.shape == (3, task.num_classes)
    assert task.attack_labels(samples).shape == (3,)
    # text-attack interface: the attacked text goes back into the source, and each output is judged
    texts = [task.attacked_text(s) for s in samples]
    assert all(task.attacked_source(s, t).startswith(" ") for s, t in zip(samples, texts))
    enc = model.encode(batch.input_ids, normalize(batch.images))
    outs = task.text_outputs(model, enc, samples)
    assert len(outs) == 3
    if not task.closed_answers:
        for o, s in zip(outs, samples):
            success, score = task.text_goal(o, s, 1.0, 0.5)
            assert isinstance(success, bool) and isinstance(score, float)


@pytest.mark.parametrize("task_name", task_names())
def test_every_task_round_trips_its_manifest_fields(tmp_path, task_name):
    from robustbench_ofa.data.manifest import read_manifest, write_manifest

    samples = _samples(task_name, 2)
    path = write_manifest(samples, tmp_path / "m.jsonl", tmp_path / "img")
    back = list(read_manifest(path, task_name))
    cls = task_class(task_name)
    for a, b in zip(samples, back):
        assert cls.manifest_record(a) == cls.manifest_record(b)
        assert cls.reference_text(a) == cls.reference_text(b)
        assert cls.prompt(a.text, a.premise) == cls.prompt(b.text, b.premise)

"""Text attacks (TextAttack recipes, offline) and the joint co-attack: budgets, goals, batching, determinism,
resume, the missing-resource error, and `robust-ofa evaluate --attack pwws / co-attack` end to end.

Tests needing the offline resources skip with the set-up command when they are absent, except under CI
(``CI`` set), where the tox set-up installs them and their absence is a failure.
"""

from __future__ import annotations

import json
import socket

import pytest
import torch
from conftest import colour_samples

from attacks import AttackParams, specs
from attacks.text.budget import TextBudget, words_changed
from attacks.text.resources import TextResourcesMissing, require
from robustbench_ofa.cli import main
from robustbench_ofa.evaluation.config import EvalConfig, parse_eps_list
from robustbench_ofa.evaluation.outputs import compute
from robustbench_ofa.evaluation.runner import Evaluator, LoadedVariant
from robustbench_ofa.evaluation.store import ResultsStore
from robustbench_ofa.zoo.recipe import micro_recipe

#: rerun by CI under the most portable CPU kernels and 1 thread (scripts/ci_portable.py)
pytestmark = pytest.mark.kernels

SAMPLES = colour_samples(8, 21)


@pytest.fixture(scope="session")
def text_resources():
    # a missing set-up step is an error naming the set-up command (never a silent skip)
    return require()


@pytest.fixture
def offline(monkeypatch):
    """No network for this process: any connection attempt raises."""
    def refuse(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def test_words_changed_counts_whitespace_words():
    assert words_changed("the red square", "the red square") == 0
    assert words_changed("the red square", "the rad square") == 1
    assert words_changed("the red square", "the red squ\u200bare") == 1  # invisible char: one visible word
    assert words_changed("the red square", "the red big square") == 1
    assert words_changed("the red square", "the square") == 1
    assert words_changed("the red square", "a blue square") == 2


def test_missing_resources_is_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ROBUST_OFA_TEXT_RESOURCES", str(tmp_path / "none"))
    with pytest.raises(TextResourcesMissing, match="install_text_resources.py"):
        require(["wordnet"])
    rc = main(["evaluate", "--attack", "pgd,pwws", "--home", str(tmp_path / "home"), "--out", str(tmp_path / "o"),
               "--quiet", "--report", ""])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "text attacks need offline resources" in err and "run: python scripts/install_text_resources.py" in err
    assert not (tmp_path / "home").exists()  # refused before any model was built


def _outcomes(colour_model, name, words=1, queries=40, seeds=(3, 4)):
    from attacks.text.engine import run_text_attack

    model, task = colour_model
    samples = SAMPLES[: len(seeds)]
    batch = task.collate(samples)
    return run_text_attack(name, model, task, samples, batch.images, TextBudget(words=words, queries=queries),
                           list(seeds), [1.0] * len(samples))


@pytest.mark.parametrize("name", [s.name for s in specs(modality="text")])
def test_each_recipe_runs_offline_within_its_budget(colour_model, text_resources, offline, name):
    for o in _outcomes(colour_model, name):
        assert o.status in ("successful", "failed")  # clean-correct samples: attacked, not skipped
        assert o.words_changed <= 1 and o.words_changed == words_changed(o.original, o.adversarial)
        assert 0 < o.queries <= 40 and o.evaluations <= o.queries


def test_a_larger_word_budget_is_respected_too(colour_model, text_resources):
    outs = _outcomes(colour_model, "deepwordbug", words=2, queries=80)
    assert all(o.words_changed <= 2 for o in outs)


@pytest.mark.parametrize("name", ["deepwordbug", "badchars"])  # the recipes with random choices
def test_reruns_give_identical_results(colour_model, text_resources, name):
    assert _outcomes(colour_model, name) == _outcomes(colour_model, name)


def test_grounding_goal_succeeds_exactly_below_iou_half(text_resources):
    from attacks.text.resources import import_textattack

    import_textattack(text_resources)
    from attacks.text.goals import TaskJudgedGoal
    from robustbench_ofa.data.types import Sample
    from robustbench_ofa.tasks.grounding import Grounding, GroundingOutput

    class Wrapper:
        model = None

    task = Grounding.__new__(Grounding)  # only iou_threshold is read
    sample = Sample(uid="g", task="grounding", image=None, text="x", box=(0.0, 0.0, 10.0, 10.0))
    goal = TaskJudgedGoal(Wrapper(), task, sample)
    for height, success in ((4.9, True), (4.99, True), (5.0, False), (5.1, False), (10.0, False), (0.0, True)):
        out = GroundingOutput((0.0, 0.0, 10.0, height), 1.0)  # IoU = height / 10
        assert goal._is_goal_complete(out, None) is success, height
    lo, hi = (GroundingOutput((0.0, 0.0, 10.0, h), 1.0) for h in (4.0, 6.0))
    assert goal._get_score(lo, None) > goal._get_score(hi, None)


def test_batched_queries_match_one_at_a_time_and_cache(colour_model):
    from attacks.text.queries import SampleQueries, UnbatchedQueries

    model, task = colour_model
    s = SAMPLES[0]
    image = task.collate([s]).images[0]
    texts = ["what color is the shape?", "what colour is the shape?", "what color is the form?",
             "what color is the shape?"]
    batched = SampleQueries(model, task, s, image, batch_size=2)
    one = UnbatchedQueries(model, task, s, image)
    for a, b in zip(batched.outputs(texts), one.outputs(texts)):
        assert torch.allclose(a, b, atol=1e-4)
    assert batched.evaluations == 3 and one.evaluations == 4  # the repeated text came from the cache
    batched.outputs(texts[:2])
    assert batched.evaluations == 3


def _config(**kw) -> EvalConfig:
    base = dict(attacks=["pgd", "deepwordbug", "co-attack"], tasks=["vqa"], eps=parse_eps_list("2/255,8/255"),
                n_samples=8, batch_size=4, params=AttackParams.of(steps=3, text_queries=30, co_text="deepwordbug"),
                beam=1, transfer=False, sanity_samples=2)
    base.update(kw)
    return EvalConfig(**base)


def _run(colour_model, path, cfg, store=None):
    model, task = colour_model
    store = store or ResultsStore(path / "results.sqlite")
    store.bind(cfg.settings())
    Evaluator(cfg, store, lambda n: LoadedVariant(n, model, task.tokenizer, 32), lambda t, n: SAMPLES[:n],
              progress=False).run(["a"])
    return store


def _numbers(store) -> dict:
    return {k: v.drop(columns=[c for c in v.columns if c == "seconds"]).reset_index(drop=True)
            for k, v in compute(store).items() if len(v)}


def test_evaluator_text_and_joint_rows_worst_case_and_resume(colour_model, text_resources, tmp_path):
    cfg = _config()
    ref = _run(colour_model, tmp_path / "ref", cfg)
    res = ref.frame("results")
    text = res[res.norm == "text"]
    joint = res[res.norm == "linf+text"]
    assert len(text) == len(joint) == 8
    assert (text.eps_label == "words=1").all() and (joint.eps_label == "2/255+words=1").all()
    attacked = text[text.status == "attacked"]
    assert (attacked.words_changed <= 1).all() and attacked.adv_text.notna().all()
    assert (joint.linf <= 2 / 255 + 1e-6).all()
    worst = compute(ref)["worst_case"].set_index(["norm", "eps_label"]).robust_acc
    # the joint threat contains linf 2/255 and 1 word: never more robust than either
    assert worst[("linf+text", "2/255+words=1")] <= min(worst[("linf", "2/255")], worst[("text", "words=1")]) + 1e-12
    summary = compute(ref)["text_attacks"]
    assert set(summary.attack) == {"deepwordbug", "co-attack"}
    assert {"successful", "failed", "skipped", "original_acc", "acc_under_attack", "attack_success_rate",
            "avg_perturbed_word_pct", "avg_queries", "rejected_successes", "rejected_samples",
            "rejected_share"} <= set(summary.columns)
    assert attacked.rejected_successes.notna().all()  # the validity figure of every attacked sample is stored

    class Crash(Exception):
        pass

    class CrashingStore(ResultsStore):
        calls = 0

        def add_results(self, rows, examples=()):
            rows = list(rows)
            if rows and rows[0]["norm"] == "linf+text":
                CrashingStore.calls += 1
                if CrashingStore.calls == 2:
                    raise Crash
            super().add_results(rows, examples)

    path = tmp_path / "crash"
    path.mkdir()
    with pytest.raises(Crash):
        _run(colour_model, path, cfg, store=CrashingStore(path / "results.sqlite"))
    resumed = _run(colour_model, path, cfg)
    a, b = _numbers(ref), _numbers(resumed)
    assert a.keys() == b.keys()
    for k in a:
        pd_equal = a[k].equals(b[k]) or a[k].round(9).equals(b[k].round(9))
        assert pd_equal, k


@pytest.fixture
def micro(monkeypatch, tmp_path_factory):
    recipe = micro_recipe()
    monkeypatch.setattr("robustbench_ofa.zoo.recipe.default_recipe", lambda: recipe)
    return tmp_path_factory.getbasetemp() / "micro-home"


@pytest.mark.parametrize("attacks, tasks", [("pwws", "ve"), ("co-attack", "grounding"),
                                            ("pgd,pwws,co-attack", "ve,caption")])
def test_cli_evaluate_text_attacks_end_to_end(micro, text_resources, offline, tmp_path, capsys, attacks, tasks):
    out = tmp_path / "out"
    args = ["evaluate", "--attack", attacks, "--eps", "2/255", "--n-samples", "2", "--batch-size", "2", "--steps",
            "2", "--text-queries", "20", "--home", str(micro), "--out", str(out), "--quiet", "--report", "",
            "--task", tasks, "--model", "micro-finetune", "--no-transfer"]
    assert main(args) == 0
    assert "TEXT ATTACKS" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    norms = {r["norm"] for r in summary["worst_case"]}
    assert norms >= ({"text"} if "pwws" in attacks else set()) | ({"linf+text"} if "co-attack" in attacks else set())
    assert summary["text_attacks"]
    n = len(ResultsStore(out / "results.sqlite").frame("results"))
    assert main(args) == 0  # resume: nothing to redo
    assert len(ResultsStore(out / "results.sqlite").frame("results")) == n

"""`robust-ofa evaluate` end to end on a micro zoo (same code path as the embedded one), and its errors."""

from __future__ import annotations

import json

import pytest

from robustbench_ofa.cli import main
from robustbench_ofa.evaluation.store import ResultsStore
from robustbench_ofa.zoo.recipe import micro_recipe


@pytest.fixture
def micro(monkeypatch, tmp_path_factory):
    recipe = micro_recipe()
    monkeypatch.setattr("robustbench_ofa.zoo.recipe.default_recipe", lambda: recipe)
    return tmp_path_factory.getbasetemp() / "micro-home"


def _args(home, out, *extra):
    return ["evaluate", "--attack", "pgd,square", "--eps", "8/255,32/255", "--n-samples", "3", "--batch-size", "3",
            "--steps", "2", "--queries", "4", "--home", str(home), "--out", str(out), "--quiet", "--report", "",
            "--task", "ve", *extra]


def test_evaluate_end_to_end_and_resume(micro, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_args(micro, out)) == 0
    text = capsys.readouterr().out
    assert "robust % [95% CI]" in text and f"results: {out.resolve()}" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True
    variants = {r["variant"] for r in summary["clean"]}
    assert variants == set(micro_recipe().names[1:])  # every tuned variant, not the base
    assert set(summary["run"]["variants"]) == variants
    store = ResultsStore(out / "results.sqlite")
    n_rows = len(store.frame("results"))
    assert n_rows == len(variants) * 1 * 2 * 2 * 3  # variants x tasks x eps x attacks x samples
    assert len(store.frame("transfer")) > 0
    assert main(_args(micro, out)) == 0  # resume: nothing left to do, same numbers
    assert len(store.frame("results")) == n_rows
    assert json.loads((out / "summary.json").read_text())["worst_case"] == summary["worst_case"]


@pytest.mark.parametrize("extra, message", [
    (["--attack", "pgdx"], "unknown attack 'pgdx'"),
    (["--eps", "300/255"], "outside [0, 1]"),
    (["--eps", "-0.1"], "outside [0, 1]"),
    (["--attack", "autoattack", "--task", "grounding", "--model", "micro-finetune"], "closed-answer tasks"),
    (["--model", "no-such-model"], "unknown model 'no-such-model'"),
    (["--steps", "0"], "--steps: expected a positive integer"),
    (["--data", "nonsense"], "data source"),
    (["--task", "detection"], "unknown task 'detection'"),
    (["--queries", "0"], "--queries: expected a positive integer"),
    (["--cw-c", "-1"], "--cw-c: expected a number >= 0"),
    (["--alpha", "2"], "--alpha: expected a step size in (0, 1]"),
])
def test_bad_input_is_one_line_and_exit_2(micro, tmp_path, capsys, extra, message):
    args = _args(micro, tmp_path / "o")
    for flag, value in zip(extra[::2], extra[1::2]):
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "o" / "summary.json").exists()


def test_a_different_run_in_the_same_directory_is_refused(micro, tmp_path, capsys):
    out = tmp_path / "out"
    one = ["--model", "micro-finetune", "--no-transfer"]
    assert main(_args(micro, out, *one)) == 0
    capsys.readouterr()
    assert main(_args(micro, out, *one, "--steps", "3")) == 2
    assert "holds a different run" in capsys.readouterr().err


def test_resuming_with_other_weights_under_the_same_name_is_refused(micro, tmp_path, capsys):
    """A rebuilt zoo keeps its model names; resuming must not mix the old weights' numbers in."""
    out = tmp_path / "out"
    one = ["--model", "micro-finetune", "--no-transfer"]
    assert main(_args(micro, out, *one)) == 0
    capsys.readouterr()
    store = ResultsStore(out / "results.sqlite")
    stored = store.get_meta("weights:micro-finetune")
    assert stored and all(len(h) == 64 for h in stored.values())
    store.set_meta("weights:micro-finetune", {k: "0" * 64 for k in stored})  # as if built from other weights
    assert main(_args(micro, out, *one)) == 2
    err = capsys.readouterr().err
    assert "has other weights than the run stored here" in err and err.count("\n") == 1
    assert "sha256 000000000000... then" in err  # names the part whose hash changed, old value first

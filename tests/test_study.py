"""Study files: reading, checking (one line per bad input, before any work), running, resuming, records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robustbench_ofa.cli import main
from robustbench_ofa.study import build_steps, load_study
from robustbench_ofa.zoo.recipe import micro_recipe

STUDIES = Path(__file__).resolve().parents[1] / "studies"


@pytest.fixture
def micro(monkeypatch, tmp_path_factory):
    recipe = micro_recipe()
    monkeypatch.setattr("robustbench_ofa.zoo.recipe.default_recipe", lambda: recipe)
    return tmp_path_factory.getbasetemp() / "micro-home"


def _write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


# ---------------------------------------------------------------------------------------------------
# The embedded study is the default run


def test_embedded_study_has_the_default_runs_settings():
    """Every setting of `robust-ofa evaluate --attack pgd` (the config's stored settings and the report
    formats) equals what studies/embedded.toml runs: if a default changes, this fails until the file is
    updated to say which run it means."""
    from robustbench_ofa.commands.evaluate import build_config
    from robustbench_ofa.study.plan import _parse

    (step,) = build_steps(load_study(STUDIES / "embedded.toml"))
    study_args = _parse(step.argv)
    default_args = _parse(["evaluate", "--attack", "pgd"])
    assert build_config(study_args, []).settings() == build_config(default_args, []).settings()
    assert study_args.report == default_args.report and study_args.model is None and study_args.data is None


def _summary_numbers(out: Path) -> dict:
    """summary.json without what differs between two runs of the same numbers (timings, the command)."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("seconds", "run")}
        return [strip(v) for v in value] if isinstance(value, list) else value

    return strip(json.loads((out / "summary.json").read_text()))


def test_embedded_study_gives_the_numbers_of_the_command(micro, tmp_path, capsys):
    # the large-eps check at 3 steps x 1 restart: at its defaults (100 x 2) it was 80 % of this test's time
    small = ["evaluate.n-samples=3", "evaluate.eps=8/255", "evaluate.report=''", "evaluate.batch-size=3",
             "evaluate.steps=2", "evaluate.task=ve", "evaluate.sanity-steps=3", "evaluate.sanity-restarts=1"]
    cmd = tmp_path / "cmd"
    assert main(["evaluate", "--attack", "pgd", "--n-samples", "3", "--eps", "8/255", "--report", "",
                 "--batch-size", "3", "--steps", "2", "--task", "ve", "--sanity-steps", "3", "--sanity-restarts",
                 "1", "--home", str(micro), "--out", str(cmd), "--quiet"]) == 0
    study = tmp_path / "study"
    sets = [a for s in small for a in ("--set", s)]
    assert main(["study", "run", str(STUDIES / "embedded.toml"), "--out", str(study), *sets,
                 "--set", f"study.home={json.dumps(str(micro))}"]) == 0
    assert _summary_numbers(study / "evaluate") == _summary_numbers(cmd)
    run = json.loads((study / "evaluate" / "summary.json").read_text())["run"]
    assert run["study"]["name"] == "embedded" and run["study"]["content"] == (STUDIES / "embedded.toml").read_text()
    # a rerun skips the finished step
    capsys.readouterr()
    assert main(["study", "run", str(STUDIES / "embedded.toml"), "--out", str(study), *sets,
                 "--set", f"study.home={json.dumps(str(micro))}"]) == 0
    assert "done, skipped" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------
# Bad input: one line naming the file, the key and what was expected, before any work


GOOD = """
[study]
name = "t"
[vars.base]
help = "the base checkpoint"
[vars.steps]
default = 2
[bases.b]
model = "${base}"
[variants.ft]
base = "b"
method = "finetune"
task = "vqa"
data = "synthetic:downstream_train:4"
max-steps = "${steps}"
[evaluate]
attack = "pgd"
task = "vqa"
"""


@pytest.mark.parametrize("edit, sets, message", [
    (("[study]", "[study]\nbogus = 1"), [], "study.bogus: unknown key"),
    (("[evaluate]", "[evaluation]"), [], "evaluation: unknown key (expected one of study, vars"),
    (("", ""), [], "variable 'base' is not set (the base checkpoint): pass --set base=VALUE"),
    (("", ""), ["base=/no/such/folder"], "model '/no/such/folder': not a zoo or registered name, and no such folder"),
    (('method = "finetune"', 'method = "finetune2"'), ["base=micro-base"], "[variants.ft]: unknown tuning method"),
    (('attack = "pgd"\ntask = "vqa"', 'attack = "pgd"\ntask = "detection"'), ["base=micro-base"],
     "[evaluate]: unknown task 'detection'"),
    (('attack = "pgd"', 'attack = "pgdx"'), ["base=micro-base"], "[evaluate]: unknown attack 'pgdx'"),
    (('data = "synthetic:downstream_train:4"', 'data = "tsv:/no/such.tsv:vqa"'), ["base=micro-base"],
     "[variants.ft]: --data tsv:/no/such.tsv:vqa (vqa data): /no/such.tsv does not exist"),
    (('base = "b"', 'base = "c"'), ["base=micro-base"], "variants.ft.base: expected one of the [bases] tables"),
    (("", ""), ["base=micro-base", "other=1"], "declares no variable 'other'"),
    (("", ""), ["base=micro-base", "variants.ft.max-steps=0"], "[variants.ft]: --steps: expected a positive integer"),
    (("", ""), ["base=micro-base", "variants.nope.lr=1"], "has no table [variants.nope]"),
    (('max-steps = "${steps}"', 'max-stepz = 3'), ["base=micro-base"],
     "variants.ft.max-stepz: not an option of this command"),
    (('max-steps = "${steps}"', 'out = "x"'), ["base=micro-base"], "variants.ft.out: set by the study itself"),
    (('max-steps = "${steps}"', 'lr = "1e-3,1e-2"'), ["base=micro-base"], "a study variant is one training run"),
    (("[study]", "[study"), [], "not valid TOML"),
])
def test_bad_study_files_are_one_line_before_any_work(micro, tmp_path, capsys, edit, sets, message):
    assert edit[0] in GOOD
    path = _write(tmp_path, GOOD.replace(*edit, 1))
    argv = ["study", "run", str(path), "--out", str(tmp_path / "run")]
    for s in sets:
        argv += ["--set", s]
    err = _error(capsys, argv)
    assert message in err and (str(path) in err or "--set" in err), err
    assert not (tmp_path / "run").exists()  # nothing was started


def test_answer_file_with_duplicates_is_refused(micro, tmp_path, capsys):
    answers = tmp_path / "answers.txt"
    answers.write_text("yes\nno\nyes\n")
    path = _write(tmp_path, GOOD.replace('method = "finetune"', f'method = "finetune"\nanswers = "{answers}"'))
    err = _error(capsys, ["study", "plan", str(path), "--set", "base=micro-base"])
    assert "[variants.ft]" in err and "listed twice" in err and str(answers) in err


def test_plan_prints_the_commands_and_builds_nothing(micro, tmp_path, capsys):
    path = _write(tmp_path, GOOD)
    home = tmp_path / "home"
    assert main(["study", "plan", str(path), "--set", "base=micro-base", "--out", str(tmp_path / "r"),
                 "--set", f"study.home={json.dumps(str(home))}"]) == 0
    out = capsys.readouterr().out
    assert "robust-ofa train tune --base micro-base --method finetune --task vqa" in out
    assert "--max-steps 2" in out and f"--model {tmp_path / 'r' / 'variants' / 'ft'}" in out
    assert "--study-record" not in out
    assert not (tmp_path / "r").exists() and not home.exists()


def test_variables_keep_their_type_and_interpolate(tmp_path):
    path = _write(tmp_path, GOOD.replace('data = "synthetic:downstream_train:4"',
                                         'data = "synthetic:downstream_train:${steps}"'))
    spec = load_study(path, ["base=micro-base", "steps=5"])
    assert spec.variants["ft"]["max-steps"] == 5 and spec.variants["ft"]["data"] == "synthetic:downstream_train:5"
    assert spec.record()["vars"] == {"base": "micro-base", "steps": 5}


# ---------------------------------------------------------------------------------------------------
# Running: tune -> evaluate -> report, records, a changed file refused


def test_study_run_tunes_evaluates_records_and_refuses_a_changed_file(micro, tmp_path, capsys):
    from robustbench_ofa.cards import ModelCard

    text = GOOD + ('n-samples = 2\nbatch-size = 2\nsteps = 1\neps = "8/255"\nreport = "md"\n'
                   'transfer = false\n')
    path = _write(tmp_path, text)
    run = tmp_path / "run"
    base = ["--set", "base=micro-base", "--set", f"study.home={json.dumps(str(micro))}", "--out", str(run)]
    assert main(["study", "run", str(path), *base]) == 0
    card = ModelCard.read(run / "variants" / "ft")
    assert card.study["sha256"] == load_study(path, ["base=micro-base"]).sha256
    assert card.study["content"] == text and card.study["vars"]["steps"] == 2
    assert card.train["max_steps"] == 2 and card.method == "finetune"
    summary = json.loads((run / "evaluate" / "summary.json").read_text())
    assert [r["variant"] for r in summary["clean"]] == ["ft"]
    report = (run / "evaluate" / "report.md").read_text()
    assert "study" in report and load_study(path, ["base=micro-base"]).sha256 in report
    capsys.readouterr()

    path.write_text(text.replace("n-samples = 2", "n-samples = 3"))
    err = _error(capsys, ["study", "run", str(path), *base])
    assert "with different file content" in err and "--allow-changed" in err
    err = _error(capsys, ["study", "run", str(path), *base[:2], "--set", "steps=3", *base[2:]])
    assert "variables (--set NAME=...)" in err
    # continuing on purpose: the finished variant is kept, the evaluation (done) is skipped
    assert main(["study", "run", str(path), *base, "--allow-changed"]) == 0
    assert "done, skipped" in capsys.readouterr().err
    assert main(["study", "report", str(path), *base, "--format", "md"]) == 0

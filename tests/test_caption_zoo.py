"""Captioning out of the box: the on-demand caption zoo (``EMBEDDED_CAPTION``), built the first time
``--task caption`` is evaluated or ``zoo build --with caption`` asks for it, never by the default run."""

from __future__ import annotations

import json

from robustbench_ofa.cli import main
from robustbench_ofa.zoo import build as build_mod
from robustbench_ofa.zoo.recipe import EMBEDDED, EMBEDDED_CAPTION, micro_recipe, recipe_for_tasks


def test_caption_recipe_is_the_embedded_one_on_captions():
    assert EMBEDDED_CAPTION.tasks == ("caption",)
    assert [v.name for v in EMBEDDED_CAPTION.variants] == ["finetune", "prompt-16"]
    assert EMBEDDED_CAPTION.model == EMBEDDED.model and EMBEDDED_CAPTION.scene == EMBEDDED.scene
    assert not set(EMBEDDED_CAPTION.names) & set(EMBEDDED.names)
    assert recipe_for_tasks(["caption"]) is EMBEDDED_CAPTION and recipe_for_tasks(["ve"]) is EMBEDDED


def _micro_zoos(monkeypatch):
    default = micro_recipe()
    caption = micro_recipe(prefix="micro-caption", tasks=("caption",), task_weights={},
                           variants=tuple(v for v in default.variants if v.name in ("finetune", "prompt-16")))
    monkeypatch.setattr("robustbench_ofa.zoo.recipe.default_recipe", lambda: default)
    monkeypatch.setattr("robustbench_ofa.zoo.recipe.caption_recipe", lambda: caption)
    return default, caption


def test_evaluate_task_caption_builds_and_attacks_the_caption_zoo(monkeypatch, tmp_path, capsys):
    default, caption = _micro_zoos(monkeypatch)
    home, out = tmp_path / "home", tmp_path / "out"
    argv = ["evaluate", "--attack", "pgd", "--task", "caption", "--n-samples", "3", "--eps", "8/255", "--steps", "2",
            "--batch-size", "3", "--sanity-steps", "2", "--sanity-restarts", "1", "--home", str(home),
            "--out", str(out), "--quiet", "--report", "md"]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert {r["variant"] for r in summary["clean"]} == {"micro-caption-finetune", "micro-caption-prompt-16"}
    assert all(r["task"] == "caption" and r["score"] >= 0 for r in summary["clean"])  # mean CIDEr-D
    assert all(0 <= r["robust_score"] for r in summary["worst_case"])  # mean CIDEr-D under attack
    assert {r["attack"] for r in summary["attacks"]} == {"pgd"}
    assert "Metric clean → attacked" in (out / "report.md").read_text()
    assert build_mod.is_built(build_mod.zoo_root(home, caption))
    assert not build_mod.zoo_root(home, default).exists()  # the default zoo is not built for captions
    capsys.readouterr()
    argv[argv.index("caption")] = "caption,ve"
    assert main(argv[:-5] + ["--out", str(tmp_path / "mixed"), "--quiet", "--report", "md"]) == 2
    assert "no embedded zoo is tuned for all of these tasks" in capsys.readouterr().err


def test_zoo_build_with_caption_and_list(monkeypatch, tmp_path, capsys):
    default, caption = _micro_zoos(monkeypatch)
    home = tmp_path / "home"
    assert main(["zoo", "list", "--home", str(home)]) == 0
    listed = capsys.readouterr().out
    assert "micro-caption-prompt-16" in listed and "not built" in listed
    assert main(["zoo", "build", "--with", "caption", "--home", str(home), "--quiet"]) == 0
    table = capsys.readouterr().out
    assert build_mod.is_built(build_mod.zoo_root(home, default)) and build_mod.is_built(build_mod.zoo_root(home, caption))
    assert "micro-caption-finetune" in table and "micro-lora" in table

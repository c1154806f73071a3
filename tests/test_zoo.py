"""The model zoo: micro-zoo build (bit-identical, cached, crash-resumable), listing, loading, registering, CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from robustbench_ofa import zoo
from robustbench_ofa.cli import main
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.zoo import build as build_mod
from robustbench_ofa.zoo import recipe as recipe_mod
from robustbench_ofa.zoo.build import INDEX_FILE, artefact_dir, is_built

RECIPE = zoo.micro_recipe()
WEIGHT_SUFFIXES = (".safetensors", ".json", ".txt")


def _digests(root: Path) -> dict[str, str]:
    """sha256 of every weight and tokenizer file of a built zoo (cards and logs hold timings, so excluded)."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.suffix == ".safetensors" or path.name in ("vocab.json", "merges.txt", "config.json"):
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("home")
    zoo.ensure_embedded(home, progress=False, recipe=RECIPE)
    return home


@pytest.fixture
def micro_default(monkeypatch):
    """Make the micro recipe the default one (what the CLI and ``zoo.get`` use without a recipe)."""
    monkeypatch.setattr(recipe_mod, "EMBEDDED", RECIPE)
    return RECIPE


def test_micro_zoo_has_every_variant_with_a_full_card(home):
    root = zoo.zoo_root(home, RECIPE)
    assert is_built(root)
    index = json.loads((root / INDEX_FILE).read_text())
    assert index["models"] == RECIPE.names and index["fingerprint"] == RECIPE.fingerprint()
    assert [n.split("-", 1)[1] for n in RECIPE.names] == ["base", "finetune", "prompt-16", "prompt-64", "adapter",
                                                         "bitfit", "lora"]
    cards = zoo.list_models(home, recipe=RECIPE)
    for card in cards[len(RECIPE.names):]:  # the robust twins: listed, built only when asked for
        assert card.name in RECIPE.on_demand_names and card.status == "not built (on demand)"
        assert card.adversarial["method"] == "pgd"
    for card in cards[:len(RECIPE.names)]:
        assert card.status == "built" and card.source == "embedded"
        assert set(card.clean) == {"grounding", "ve", "vqa"} and card.clean["ve"]["n"] == RECIPE.eval_n
        assert card.trainable_params > 0 and card.total_params >= card.trainable_params
        assert set(card.versions) == {"robust-ofa", "torch", "transformers", "python"}
        assert card.image_size == RECIPE.image_size and card.seed is not None and card.build_seconds is not None
        if card.method == "pretrain":
            assert set(card.sha256) == {"model"} and card.base is None
        else:
            assert set(card.sha256) == {"base", "variant"} and card.base == "micro-base"
            assert card.sha256["base"] == zoo.list_models(home, recipe=RECIPE)[0].sha256["model"]
    base = zoo.list_models(home, recipe=RECIPE)[0]
    sizes = RECIPE.pretrain_sizes()  # task_weights: more pretraining data (and steps) for weighted tasks
    assert base.data["train"] == "synthetic:train:" + ",".join(f"{t}={n}" for t, n in sizes.items())
    assert sizes["vqa"] > sizes["grounding"] and base.data["scene"]["max_objects"] == RECIPE.scene_config().max_objects
    prompts = {c.name: c for c in zoo.list_models(home, recipe=RECIPE) if c.method == "prompt"}
    assert prompts["micro-prompt-64"].trainable_params == 4 * prompts["micro-prompt-16"].trainable_params
    assert not (root / "work").exists() and not list(root.rglob("*.tmp"))


def test_rebuild_in_another_home_is_bit_identical(home, tmp_path):
    other = zoo.ensure_embedded(tmp_path, progress=False, recipe=RECIPE)
    first = _digests(zoo.zoo_root(home, RECIPE))
    assert len(first) == 6 + len(RECIPE.variants)  # base: config, weights, BPE x2 (+ tokenizer/ copy); variants
    assert _digests(other) == first


def test_build_without_nan_filling_is_bit_identical_and_restores_the_flag(home, tmp_path, monkeypatch):
    """The build turns off deterministic mode's NaN-filling of new tensors (a speed-up): a build with it
    on gives the same files, so no kernel read memory it had not written; the caller's flag comes back."""
    import contextlib

    import torch

    real = build_mod.deterministic

    @contextlib.contextmanager
    def filling(num_threads):
        with real(num_threads):
            assert torch.utils.deterministic.fill_uninitialized_memory is False
            torch.utils.deterministic.fill_uninitialized_memory = True
            yield

    assert torch.utils.deterministic.fill_uninitialized_memory is True  # torch's default, restored after builds
    monkeypatch.setattr(build_mod, "deterministic", filling)
    filled = zoo.ensure_embedded(tmp_path, progress=False, recipe=RECIPE)
    assert _digests(filled) == _digests(zoo.zoo_root(home, RECIPE))
    assert torch.utils.deterministic.fill_uninitialized_memory is True


def test_built_zoo_is_cached_not_rebuilt(home, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("rebuilt a built zoo")

    monkeypatch.setattr(build_mod, "build_zoo", boom)
    assert zoo.ensure_embedded(home, progress=False, recipe=RECIPE) == zoo.zoo_root(home, RECIPE)
    entry = zoo.get("micro-lora", home, progress=False, recipe=RECIPE)
    assert entry.card.method == "lora"


def test_crash_during_build_resumes_and_ends_identical(home, tmp_path, monkeypatch):
    real = build_mod.build_variant

    def crash_on_third(root, recipe, index, *args, **kwargs):
        if index == 2:
            raise KeyboardInterrupt("simulated crash")
        return real(root, recipe, index, *args, **kwargs)

    monkeypatch.setattr(build_mod, "build_variant", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        zoo.ensure_embedded(tmp_path, progress=False, recipe=RECIPE)
    root = zoo.zoo_root(tmp_path, RECIPE)
    assert not is_built(root)
    assert all(c.status.startswith("not built") for c in zoo.list_models(tmp_path, recipe=RECIPE))
    base_file = artefact_dir(root, "base") / "model.safetensors"
    mtime = base_file.stat().st_mtime_ns
    monkeypatch.setattr(build_mod, "build_variant", real)
    zoo.ensure_embedded(tmp_path, progress=False, recipe=RECIPE)
    assert base_file.stat().st_mtime_ns == mtime  # finished artefacts are reused
    assert _digests(root) == _digests(zoo.zoo_root(home, RECIPE))


def test_get_returns_model_tokenizer_card_and_image_size(home):
    from robustbench_ofa.tasks import get_task

    entry = zoo.get("micro-prompt-64", home, progress=False, recipe=RECIPE)
    assert entry.name == "micro-prompt-64" and entry.image_size == RECIPE.image_size
    assert entry.tokenizer.vocab_size == entry.model.config.vocab_size and not entry.model.training
    samples = zoo.embedded_test_samples("ve", 2, recipe=RECIPE)
    task = get_task("ve", entry.tokenizer, entry.image_size)
    assert len(task.predict(entry.model, task.collate(samples))) == 2
    assert [s.uid for s in samples] == [s.uid for s in zoo.embedded_test_samples("ve", recipe=RECIPE)[:2]]
    with pytest.raises(RobustOFAError, match="unknown model 'micro-nope'"):
        zoo.get("micro-nope", home, recipe=RECIPE)


def test_register_by_path_persists_and_loads(home, tmp_path):
    user_home = tmp_path / "h"
    variant = artefact_dir(zoo.zoo_root(home, RECIPE), "adapter")
    card = zoo.register(variant, "my-adapter", user_home, recipe=RECIPE)
    assert card.source == "user" and card.method == "adapter"
    base = artefact_dir(zoo.zoo_root(home, RECIPE), "base")
    zoo.register(base, "my-base", user_home, image_size=64, tasks=["snli_ve"], recipe=RECIPE)
    registry = json.loads((user_home / "registry.json").read_text())
    assert registry["models"]["my-base"] == {"path": str(base.resolve()), "image_size": 64, "tasks": ["ve"]}
    names = [c.name for c in zoo.list_models(user_home, recipe=RECIPE)]
    assert names[-2:] == ["my-adapter", "my-base"]
    entry = zoo.get("my-adapter", user_home, recipe=RECIPE)
    assert entry.card.method == "adapter" and entry.image_size == RECIPE.image_size
    assert zoo.get("my-base", user_home, recipe=RECIPE).image_size == 64
    zoo.unregister("my-base", user_home)
    assert "my-base" not in [c.name for c in zoo.list_models(user_home, recipe=RECIPE)]


@pytest.mark.parametrize(("name", "make", "fragment"), [
    ("micro-base", "base", "taken by an embedded zoo"),
    ("bad name!", "base", "use letters, digits"),
    ("x", "empty", "neither config.json"),
    ("x", "missing", "not a folder"),
    ("x", "noweights", "no weight file"),
])
def test_register_rejects_bad_input(home, tmp_path, name, make, fragment):
    base = artefact_dir(zoo.zoo_root(home, RECIPE), "base")
    folder = {"base": base, "empty": tmp_path, "missing": tmp_path / "nope", "noweights": tmp_path}[make]
    if make == "noweights":
        (tmp_path / "config.json").write_text("{}")
    with pytest.raises(RobustOFAError, match=fragment):
        zoo.register(folder, name, tmp_path / "h", recipe=RECIPE)


def test_missing_registered_folder_is_listed_as_missing(home, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(artefact_dir(zoo.zoo_root(home, RECIPE), "base"), copy)
    zoo.register(copy, "gone", tmp_path / "h", recipe=RECIPE)
    shutil.rmtree(copy)
    card = zoo.list_models(tmp_path / "h", recipe=RECIPE)[-1]
    assert card.name == "gone" and card.status == "missing"


def test_home_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv(zoo.ENV_VAR, str(tmp_path / "env"))
    assert zoo.resolve_home() == tmp_path / "env"
    assert zoo.resolve_home(tmp_path / "flag") == tmp_path / "flag"
    monkeypatch.delenv(zoo.ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert zoo.resolve_home() == tmp_path / "xdg" / "robust-ofa"
    (tmp_path / "file").write_text("")
    with pytest.raises(RobustOFAError, match="not a directory"):
        zoo.resolve_home(tmp_path / "file")


def test_recipe_fingerprint_names_the_zoo_folder():
    other = zoo.micro_recipe(seed=1)
    assert other.fingerprint() != RECIPE.fingerprint()
    assert zoo.zoo_root("/h", other) != zoo.zoo_root("/h", RECIPE)
    with pytest.raises(RobustOFAError, match="unique"):
        zoo.ZooRecipe(variants=(zoo.VariantRecipe("a", "lora"), zoo.VariantRecipe("a", "bitfit")))
    assert zoo.micro_recipe(task_weights={"vqa": 2.0}).fingerprint() != zoo.micro_recipe(task_weights={}).fingerprint()


@pytest.mark.parametrize("weights", [{"caption": 2.0}, {"vqa": 0.0}, {"ve": -1.0}])
def test_recipe_rejects_bad_task_weights(weights):
    with pytest.raises(RobustOFAError, match="task_weights must be positive weights of tasks"):
        zoo.micro_recipe(task_weights=weights)


def test_task_weights_scale_each_tasks_pretraining_samples():
    recipe = zoo.micro_recipe(pretrain_n=10, task_weights={"ve": 1.5, "vqa": 2.0})
    assert recipe.pretrain_sizes() == {"grounding": 10, "ve": 15, "vqa": 20}
    data = build_mod._data(recipe, "train", recipe.pretrain_sizes())
    assert {t: len(v) for t, v in data.items()} == {"grounding": 10, "ve": 15, "vqa": 20}
    # sample i does not depend on how many were asked for, so weighting only adds samples
    assert data["vqa"][9].text == build_mod._data(recipe, "train", 10)["vqa"][9].text


def test_bad_card_file_is_a_one_line_error(tmp_path):
    (tmp_path / "card.json").write_text('{"name": "x"}')
    with pytest.raises(RobustOFAError, match="field 'method' is missing"):
        zoo.ModelCard.read(tmp_path)
    (tmp_path / "card.json").write_text("{broken")
    with pytest.raises(RobustOFAError, match="invalid JSON"):
        zoo.ModelCard.read(tmp_path)


# --- command line ---------------------------------------------------------------------------------


def test_cli_zoo_list_before_and_after_build(micro_default, home, tmp_path, capsys):
    assert main(["zoo", "list", "--home", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "micro-prompt-64" in out and "not built" in out and "robust-ofa zoo build" in out
    assert main(["zoo", "list", "--home", str(home)]) == 0
    text = capsys.readouterr().out
    lines = text.split("\n\n")[0].splitlines()  # the table, then the note on models not built yet
    assert "robust-ofa zoo build --with caption" in text
    assert lines[0].split()[:4] == ["name", "source", "method", "trainable"]
    assert "grounding" in lines[0] and "ve" in lines[0] and "vqa" in lines[0]
    twins = RECIPE.on_demand_names  # the robust twins and the caption zoo: listed, built only when asked for
    on_demand = twins + recipe_mod.caption_recipe().names
    assert len(lines) == 1 + len(RECIPE.names) + len(on_demand)
    assert all(line.rstrip().endswith(" built") for line in lines[1:1 + len(RECIPE.names)])
    rest = lines[1 + len(RECIPE.names):]
    assert all(line.rstrip().endswith("(on demand)") for line in rest[:len(twins)])
    assert all(line.rstrip().endswith("not built") for line in rest[len(twins):])
    assert main(["zoo", "list", "--home", str(home), "--json"]) == 0
    cards = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in cards] == RECIPE.names + on_demand


def test_cli_zoo_show_register_and_build(micro_default, home, tmp_path, capsys):
    assert main(["zoo", "show", "micro-bitfit", "--home", str(home)]) == 0
    assert json.loads(capsys.readouterr().out)["method"] == "bitfit"
    variant = artefact_dir(zoo.zoo_root(home, RECIPE), "lora")
    assert main(["zoo", "register", str(variant), "--name", "mine", "--home", str(home)]) == 0
    assert "registered mine" in capsys.readouterr().out
    assert main(["zoo", "list", "--home", str(home)]) == 0
    assert "mine" in capsys.readouterr().out
    assert main(["zoo", "unregister", "mine", "--home", str(home)]) == 0
    assert main(["zoo", "build", "--home", str(home), "--quiet"]) == 0
    assert "micro-lora" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "fragment"), [
    (["zoo", "show", "nope"], "unknown model 'nope'"),
    (["zoo", "register", "/definitely/not/here", "--name", "x"], "not a folder"),
    (["zoo", "register", ".", "--name", "x", "--image-size", "30"], None),
    (["zoo", "unregister", "nobody"], "is not registered"),
])
def test_cli_zoo_bad_input_is_one_line_and_exit_2(micro_default, tmp_path, capsys, argv, fragment):
    assert main(argv + ["--home", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("robust-ofa: error:") and "\n" not in err
    if fragment:
        assert fragment in err


# --- the old two-card layout (variant.json + card.json) is still read -----------------------------


def _as_old_layout(folder: Path, keep_card: bool = True) -> dict:
    """Rewrite a variant folder as code before card version 2 left it; returns the old variant.json."""
    card = json.loads((folder / "card.json").read_text())
    old = {"name": card["name"], "method": card["method"], "hparams": card["hparams"], "task": ",".join(card["tasks"]),
           "base_path": card.pop("base_path"), "base_sha256": card["sha256"]["base"],
           "trainable_params": card["trainable_params"], "extra": {}}
    (folder / "variant.json").write_text(json.dumps(old, indent=2, sort_keys=True))
    if keep_card:
        card["card_version"] = 1
        (folder / "card.json").write_text(json.dumps(card, indent=2, sort_keys=True))
    else:
        (folder / "card.json").unlink()
    return old


@pytest.mark.parametrize("keep_card", [True, False], ids=["variant.json+card.json", "variant.json-only"])
def test_variant_folders_in_the_old_layout_still_load_and_register(home, tmp_path, keep_card):
    import shutil

    from robustbench_ofa.tuning.variant import load_variant, read_variant_card, save_variant

    source = artefact_dir(zoo.zoo_root(home, RECIPE), "adapter")
    new_card = json.loads((source / "card.json").read_text())
    folder = tmp_path / "old-adapter"
    shutil.copytree(source, folder)
    old = _as_old_layout(folder, keep_card)
    card = read_variant_card(folder)
    assert card.method == "adapter" and card.base_path == old["base_path"]
    assert card.sha256 == new_card["sha256"] and card.hparams == old["hparams"]  # same hashes: evaluations resume
    if keep_card:
        assert card.clean == new_card["clean"] and card.base == "micro-base" and card.card_version == 1
    else:
        assert card.tasks == list(RECIPE.tasks) and card.status == "registered"
    model = load_variant(folder)
    assert model.variant_card.method == "adapter"
    registered = zoo.register(folder, "old-adapter", tmp_path / "h", recipe=RECIPE)
    assert registered.method == "adapter" and registered.sha256 == new_card["sha256"]
    entry = zoo.get("old-adapter", tmp_path / "h", progress=False, recipe=RECIPE)
    assert entry.card.method == "adapter" and entry.tokenizer.vocab_size == entry.model.config.vocab_size
    # saving over an old folder leaves one card
    save_variant(model, folder, name="old-adapter", task=card.tasks, base_dir=old["base_path"])
    assert not (folder / "variant.json").exists()
    assert read_variant_card(folder).base_path == old["base_path"]


def test_zoo_variants_have_one_card(home):
    root = zoo.zoo_root(home, RECIPE)
    for spec in RECIPE.variants:
        files = sorted(p.name for p in artefact_dir(root, spec.name).iterdir())
        assert files == ["card.json", "metrics.jsonl", "trainable.safetensors"]
        card = zoo.ModelCard.read(artefact_dir(root, spec.name))
        assert card.base_path == str(artefact_dir(root, "base").resolve()) and card.card_version == 2

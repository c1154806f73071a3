"""The model registry: the embedded zoo's models plus checkpoints users register by path.

``get(name_or_path)`` is the one way the rest of robust-ofa (evaluation, attacks, reports) obtains a
model: it returns the model in eval mode with its tokenizer, card and image size, whatever it is (an
embedded model, built on first use; a registered OFA-Sys checkpoint folder; a tuned variant folder).
User registrations live in ``HOME/registry.json`` (name -> absolute path plus optional image size and
tasks), written atomically.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robustbench_ofa.cards import CARD_FILE, ModelCard
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.io import atomic_write_text
from robustbench_ofa.zoo.build import artefact_dir, ensure_embedded, ensure_on_demand, is_built, zoo_root
from robustbench_ofa.zoo.home import REGISTRY_FILE, ensure_home, resolve_home
from robustbench_ofa.zoo.recipe import ZooRecipe, default_recipe, embedded_recipes, recipe_for_name

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
#: Image size assumed for a registered OFA-Sys checkpoint when none is given (the HF example's 256 px).
DEFAULT_IMAGE_SIZE = 256


@dataclass
class ZooModel:
    """A loaded zoo entry: what the evaluation and attack code needs."""

    name: str
    model: Any
    tokenizer: Any
    card: ModelCard
    image_size: int


# ---------------------------------------------------------------------------------------------------
# User registry file


def _registry_path(home: str | Path | None) -> Path:
    return resolve_home(home) / REGISTRY_FILE


def _read_registry(home: str | Path | None) -> dict[str, dict[str, Any]]:
    path = _registry_path(home)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RobustOFAError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        raise RobustOFAError(f"{path}: field 'models': expected an object mapping names to entries")
    for name, entry in models.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise RobustOFAError(f"{path}: entry '{name}': field 'path' is missing")
    return models


def _write_registry(home: str | Path | None, models: dict[str, dict[str, Any]]) -> None:
    ensure_home(home)
    text = json.dumps({"version": 1, "models": models}, indent=2, sort_keys=True) + "\n"
    atomic_write_text(_registry_path(home), text)


# ---------------------------------------------------------------------------------------------------
# Folders -> cards and models


def _folder_kind(path: Path) -> str:
    """``variant`` (tuned tensors or an old ``variant.json``), ``checkpoint`` (config.json + weights), else a
    one-line error."""
    from robustbench_ofa.models.loading import WEIGHT_FILES
    from robustbench_ofa.tuning.variant import is_variant_folder

    if not path.is_dir():
        raise RobustOFAError(f"{path}: not a folder (expected an OFA checkpoint or tuned-variant folder)")
    if is_variant_folder(path):
        return "variant"
    if (path / "config.json").is_file():
        if not any((path / w).is_file() for w in WEIGHT_FILES):
            raise RobustOFAError(f"{path}: no weight file (expected one of {', '.join(WEIGHT_FILES)})")
        return "checkpoint"
    raise RobustOFAError(f"{path}: neither config.json (an OFA checkpoint) nor trainable.safetensors (a tuned "
                         "variant)")


def _tokenizer_dir(path: Path, kind: str) -> Path:
    from robustbench_ofa.models.tokenizer import VOCAB_FILE
    from robustbench_ofa.tuning.variant import read_variant_card

    for candidate in (path, path / "tokenizer"):
        if (candidate / VOCAB_FILE).is_file():
            return candidate
    if kind == "variant":
        base_path = read_variant_card(path).base_path
        for candidate in (() if not base_path else (Path(base_path), Path(base_path) / "tokenizer")):
            if (candidate / VOCAB_FILE).is_file():
                return candidate
    raise RobustOFAError(f"{path}: no tokenizer (vocab.json + merges.txt) in the folder or its base")


def card_for_folder(path: Path, name: str, entry: dict[str, Any] | None = None) -> ModelCard:
    """The folder's card (``card.json``; a variant's also in the old ``variant.json`` layout), else a card
    built from what the folder holds."""
    from robustbench_ofa.tuning.variant import read_variant_card

    entry = entry or {}
    if _folder_kind(path) == "variant":
        card = read_variant_card(path)
    elif (path / CARD_FILE).is_file():
        card = ModelCard.read(path)
    else:
        card = _synth_card(path, name)
    card.name = name
    card.path = str(path.resolve())
    if entry.get("image_size"):
        card.image_size = int(entry["image_size"])
    if entry.get("tasks"):
        card.tasks = list(entry["tasks"])
    return card


def _synth_card(path: Path, name: str) -> ModelCard:
    """A card for a checkpoint folder that has none (an OFA-Sys download)."""
    from robustbench_ofa.models.loading import file_sha256, weight_file

    return ModelCard(name=name, method="checkpoint", tasks=[], sha256={"model": file_sha256(weight_file(path))},
                     source="user", status="registered")


def load_folder(path: str | Path, name: str | None = None, entry: dict[str, Any] | None = None,
                device: str = "cpu", base_dir: str | Path | None = None) -> ZooModel:
    """Load a checkpoint or tuned-variant folder as a ``ZooModel``."""
    from robustbench_ofa.models.loading import load_pretrained
    from robustbench_ofa.models.tokenizer import OFATokenizer
    from robustbench_ofa.tuning.variant import load_variant

    path = Path(path)
    kind = _folder_kind(path)
    card = card_for_folder(path, name or path.name, entry)
    if kind == "variant":
        model = load_variant(path, base_dir=base_dir, device=device)
        tok_dir = _tokenizer_dir(Path(base_dir), "checkpoint") if base_dir is not None else _tokenizer_dir(path, kind)
    else:
        model = load_pretrained(path, device)
        tok_dir = _tokenizer_dir(path, kind)
    tokenizer = OFATokenizer.from_pretrained(tok_dir)
    if tokenizer.vocab_size != model.config.vocab_size:
        raise RobustOFAError(f"{tok_dir}: tokenizer has {tokenizer.vocab_size} ids but the model's vocab_size is "
                             f"{model.config.vocab_size}")
    image_size = int(card.image_size or DEFAULT_IMAGE_SIZE)
    return ZooModel(card.name, model.eval(), tokenizer, card, image_size)


# ---------------------------------------------------------------------------------------------------
# Public API


def embedded_names(recipe: ZooRecipe | None = None) -> list[str]:
    recipe = recipe or default_recipe()
    return recipe.names


def _embedded_card(root: Path, recipe: ZooRecipe, name: str) -> ModelCard:
    short = name[len(recipe.prefix) + 1:]
    folder = artefact_dir(root, short)
    on_demand = name in recipe.on_demand_names
    if is_built(root) and (not on_demand or folder.is_dir()):
        return ModelCard.read(folder)
    spec = {v.name: v for v in (*recipe.variants, *recipe.on_demand)}.get(short)
    method = "pretrain" if spec is None else spec.method
    return ModelCard(name=name, method=method, tasks=list(recipe.tasks),
                     base=None if spec is None else recipe.model_name("base"),
                     hparams={} if spec is None else dict(spec.hparams), image_size=recipe.image_size,
                     seed=recipe.seed, status="not built (on demand)" if on_demand else "not built",
                     adversarial=(spec.train.adversarial() or {}) if spec is not None else {})


def list_models(home: str | Path | None = None, recipe: ZooRecipe | None = None) -> list[ModelCard]:
    """Cards of the embedded models (status "not built" before first use) and of registered models.

    Never builds anything; a registered folder that has gone missing is listed with status "missing".
    """
    recipes = [recipe] if recipe is not None else list(embedded_recipes())
    cards = [_embedded_card(zoo_root(home, r), r, n) for r in recipes for n in (*r.names, *r.on_demand_names)]
    for name, entry in sorted(_read_registry(home).items()):
        path = Path(entry["path"])
        try:
            card = card_for_folder(path, name, entry)
            card.source, card.status = "user", "registered"
        except RobustOFAError:
            card = ModelCard(name=name, method="?", tasks=list(entry.get("tasks") or []), source="user",
                             status="missing", path=str(path))
        cards.append(card)
    return cards


def get(name_or_path: str | Path, home: str | Path | None = None, device: str = "cpu", progress: bool = True,
        recipe: ZooRecipe | None = None) -> ZooModel:
    """Load a zoo model by name (embedded models are built on first use) or any model folder by path."""
    key = str(name_or_path)
    mine = recipe is not None and (key in recipe.names or key in recipe.on_demand_names)
    recipe = recipe if mine else (recipe_for_name(key) or recipe or default_recipe())
    if key in recipe.names or key in recipe.on_demand_names:
        root = ensure_embedded(home, progress=progress, recipe=recipe)
        short = key[len(recipe.prefix) + 1:]
        if key in recipe.on_demand_names:  # robust-trained twins: built the first time they are asked for
            ensure_on_demand(root, recipe, short, progress=progress)
        folder = artefact_dir(root, short)
        base_dir = None if short == "base" else artefact_dir(root, "base")
        return load_folder(folder, key, device=device, base_dir=base_dir)
    registry = _read_registry(home)
    if key in registry:
        entry = registry[key]
        return load_folder(Path(entry["path"]), key, entry, device=device)
    path = Path(key).expanduser()
    if path.exists():
        return load_folder(path, None, device=device)
    known = [n for r in embedded_recipes() for n in (*r.names, *r.on_demand_names)] + sorted(registry)
    raise RobustOFAError(f"unknown model '{key}': not a zoo name ({', '.join(known)}) nor an existing folder")


def register(path: str | Path, name: str, home: str | Path | None = None, image_size: int | None = None,
             tasks: list[str] | None = None, recipe: ZooRecipe | None = None, overwrite: bool = False) -> ModelCard:
    """Register a checkpoint or variant folder under ``name`` (persisted in ``HOME/registry.json``).

    The folder is checked now (kind, weights, tokenizer) so a bad registration fails at once, not at
    the first evaluation.
    """
    recipe = recipe or default_recipe()
    from robustbench_ofa.tasks import canonical_task

    if not _NAME_RE.match(name or ""):
        raise RobustOFAError(f"model name '{name}': use letters, digits, '.', '_' or '-' (max 100 characters)")
    if name in recipe.names or recipe_for_name(name) is not None:
        raise RobustOFAError(f"model name '{name}' is taken by an embedded zoo; choose another name")
    folder = Path(path).expanduser().resolve()
    kind = _folder_kind(folder)
    _tokenizer_dir(folder, kind)
    if image_size is not None and (image_size < 16 or image_size % 16):
        raise RobustOFAError(f"image size {image_size}: expected a positive multiple of 16")
    task_list = [canonical_task(t) for t in tasks] if tasks else []
    registry = _read_registry(home)
    if name in registry and not overwrite and registry[name]["path"] != str(folder):
        raise RobustOFAError(f"model name '{name}' is already registered for {registry[name]['path']}")
    entry: dict[str, Any] = {"path": str(folder)}
    if image_size is not None:
        entry["image_size"] = image_size
    if task_list:
        entry["tasks"] = task_list
    registry[name] = entry
    _write_registry(home, registry)
    card = card_for_folder(folder, name, entry)
    card.source, card.status = "user", "registered"
    return card


def unregister(name: str, home: str | Path | None = None) -> None:
    registry = _read_registry(home)
    if name not in registry:
        raise RobustOFAError(f"model '{name}' is not registered in {_registry_path(home)}")
    del registry[name]
    _write_registry(home, registry)


def load_embedded(home: str | Path | None = None, device: str = "cpu", progress: bool = True,
                  recipe: ZooRecipe | None = None) -> list[ZooModel]:
    """Every model of the embedded zoo (built first if needed), base first."""
    recipe = recipe or default_recipe()
    return [get(n, home, device, progress, recipe) for n in recipe.names]


def embedded_test_samples(task: str, n: int | None = None, recipe: ZooRecipe | None = None) -> list:
    """The downstream test samples the embedded cards were scored on (or the first ``n``; more if larger)."""
    recipe = recipe or default_recipe()
    from robustbench_ofa.data.synthetic import generate

    return generate(task, "downstream_test", recipe.eval_n if n is None else n, recipe.scene_config(),
                    recipe.data_seed)

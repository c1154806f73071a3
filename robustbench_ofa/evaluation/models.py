"""Which models and data an evaluation uses: zoo names or paths, and a data-source spec.

Kept apart from the runner so the runner stays independent of where models come from: it only sees a
``load(name) -> LoadedVariant`` function and a ``samples(task, n)`` function.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.evaluation.runner import LoadedVariant
from robustbench_ofa.evaluation.twins import twin_recipe


@dataclass
class Catalog:
    """The models of one evaluation, loaded lazily (one in memory at a time)."""

    names: list[str]
    home: str | None
    device: str = "cpu"
    progress: bool = True
    cards: dict = field(default_factory=dict)
    #: Models given by path: their name in tables and reports -> the ``--model`` value (a folder).
    paths: dict[str, str] = field(default_factory=dict)
    #: The embedded zoo whose generated data the run uses when no ``--data`` is given (None: the default).
    recipe: Any = None

    def load(self, name: str) -> LoadedVariant:
        from robustbench_ofa import zoo

        entry = zoo.get(self.paths.get(name, name), self.home, device=self.device, progress=self.progress,
                        recipe=self.recipe)
        entry.card.name = name
        self.cards[name] = entry.card
        return LoadedVariant(name, entry.model, entry.tokenizer, entry.image_size, entry.card.to_dict())

    @property
    def default_tasks(self) -> list[str]:
        """The tasks the models were tuned on (union), in OFA's task order."""
        from robustbench_ofa.tasks import task_names

        tasks: set[str] = set()
        for name in self.names:
            if name not in self.cards:
                self.load(name)
            tasks.update(self.cards[name].tasks)
        return [t for t in task_names() if t in tasks] or ["ve"]

    def variant_info(self) -> dict:
        out = {}
        for name in self.names:
            card = self.cards.get(name)
            if card is not None:
                out[name] = {"name": name, "method": card.method, "trainable_params": card.trainable_params,
                             "total_params": card.total_params, "hparams": card.hparams, "sha256": card.sha256,
                             "clean": card.clean, "base": card.base, "twin_recipe": twin_recipe(card.to_dict())}
                if card.adversarial:  # robust-trained: labelled in the reports, placed on the frontier
                    out[name]["adversarial"] = card.adversarial
                if card.train_grad_evals is not None:
                    out[name]["train_grad_evals"] = card.train_grad_evals
                if name in self.paths:  # tables and reports show the name; the run metadata keeps the folder
                    out[name]["path"] = card.path or str(Path(self.paths[name]).expanduser().resolve())
        return out


def resolve_models(specs: Sequence[str] | None, home: str | None, device: str = "cpu",
                   progress: bool = True, tasks: Sequence[str] | None = None) -> Catalog:
    """Zoo names or paths; none given -> the tuned variants of the embedded zoo made for ``tasks`` (the
    default zoo, or the caption zoo for ``--task caption``), built on first use."""
    from robustbench_ofa import zoo
    from robustbench_ofa.zoo.recipe import default_recipe, recipe_for_name, recipe_for_tasks

    if specs:
        given = [s for spec in specs for s in spec.split(",") if s]
        if len(set(given)) != len(given):
            raise RobustOFAError("--model: a model is listed twice")
        names, paths = _model_names(given, home)
        owners = [r for r in map(recipe_for_name, names) if r is not None]
        catalog = Catalog(names, home, device, progress, paths=paths, recipe=owners[0] if owners else default_recipe())
        for name in names:  # fail on an unknown name before any attack runs
            catalog.load(name)
        return catalog
    recipe = recipe_for_tasks(list(tasks or []))
    zoo.ensure_embedded(home, progress=progress, recipe=recipe)
    names = [n for n in zoo.embedded_names(recipe) if n != recipe.model_name("base")]
    return Catalog(names, home, device, progress, recipe=recipe)


def _is_model_path(spec: str, home: str | None) -> bool:
    """Whether ``zoo.get`` reads ``spec`` as a folder (not an embedded or registered name), as it resolves."""
    from robustbench_ofa.zoo.recipe import recipe_for_name
    from robustbench_ofa.zoo.registry import _read_registry

    if recipe_for_name(spec) is not None or not os.path.exists(os.path.expanduser(spec)):
        return False
    return spec not in _read_registry(home)


def model_name_for_folder(folder: str | Path) -> str:
    """How a model given by path is named in tables, plots and reports: its card's name, else its folder's.

    The card is the folder's ``card.json`` (written by the zoo and by ``robust-ofa train``); a card name that
    looks like a path is not used (the point is to keep local paths out of shared reports).
    """
    from robustbench_ofa.zoo.cards import CARD_FILE

    folder = Path(folder).expanduser()
    card = folder / CARD_FILE
    if os.path.isfile(card) and os.access(card, os.R_OK):
        try:
            name = json.loads(card.read_text(encoding="utf-8")).get("name")
        except (OSError, ValueError, AttributeError):
            name = None
        if isinstance(name, str) and name.strip() and not any(c in name for c in "/\\\n"):
            return name.strip()
    return folder.resolve().name or str(folder)


def _check_readable_folder(folder: Path) -> None:
    """The folder and the weight files in it can be read (one line naming the file if not)."""
    from robustbench_ofa.io import check_readable
    from robustbench_ofa.models.loading import WEIGHT_FILES
    from robustbench_ofa.tuning.variant import TENSOR_FILE

    check_readable(folder, "model folder")
    for name in (*WEIGHT_FILES, TENSOR_FILE):
        check_readable(folder / name, "weight file")


def _model_names(given: Sequence[str], home: str | None) -> tuple[list[str], dict[str, str]]:
    """Table names of the ``--model`` values, and name -> path for those given by path.

    Zoo and registered names are kept exactly. Two models that would share a name are refused, naming
    both, before any model is built or loaded.
    """
    names: list[str] = []
    paths: dict[str, str] = {}
    owner: dict[str, str] = {}
    for spec in given:
        if _is_model_path(spec, home):
            _check_readable_folder(Path(spec).expanduser())
            name = model_name_for_folder(spec)
            paths[name] = spec
        else:
            name = spec
        if name in owner:
            raise RobustOFAError(
                f"--model: {owner[name]} and {spec} would both be named '{name}' in tables and reports; "
                "rename one folder or register one under another name (robust-ofa zoo register PATH --name NAME)")
        owner[name] = spec
        names.append(name)
    return names, paths


@dataclass
class DataChoice:
    spec: str | None
    #: The embedded zoo recipe whose scenes generated data follows (None: the default zoo's).
    recipe: Any = None

    def describe(self) -> str:
        return self.spec or "synthetic:downstream_test (embedded zoo recipe)"

    def samples(self, task: str, n: int):
        from robustbench_ofa import zoo
        from robustbench_ofa.zoo.recipe import default_recipe

        recipe = self.recipe or default_recipe()
        if self.spec is None:
            return zoo.embedded_test_samples(task, n, recipe)
        from robustbench_ofa.data.sources import parse_source

        samples = parse_source(self.spec).load(task, n, scene=recipe.scene_config(), seed=recipe.data_seed)
        if not samples:
            raise RobustOFAError(f"--data {self.spec}: no {task} samples")
        return samples


def resolve_data(spec: str | None, catalog: Catalog, tasks: Sequence[str]) -> DataChoice:
    choice = DataChoice(spec, catalog.recipe)
    if spec is not None:
        from robustbench_ofa.data.sources import parse_source

        parse_source(spec)  # syntax errors surface before any model work
    return choice


def package_info() -> dict:
    import torch
    import transformers

    from robustbench_ofa import __version__

    info = {"robust-ofa": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}
    try:
        import torchattacks

        info["torchattacks"] = torchattacks.__version__
    except ImportError:
        pass
    return info

"""Which models and data an evaluation uses: zoo names or paths, and a data-source spec.

Kept apart from the runner so the runner stays independent of where models come from: it only sees a
``load(name) -> LoadedVariant`` function and a ``samples(task, n)`` function.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from dataclasses import dataclass, field

from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.evaluation.runner import LoadedVariant


@dataclass
class Catalog:
    """The models of one evaluation, loaded lazily (one in memory at a time)."""

    names: list[str]
    home: str | None
    device: str = "cpu"
    progress: bool = True
    cards: dict = field(default_factory=dict)

    def load(self, name: str) -> LoadedVariant:
        from robustbench_ofa import zoo
        from robustbench_ofa.zoo.recipe import default_recipe

        entry = zoo.get(name, self.home, device=self.device, progress=self.progress, recipe=default_recipe())
        self.cards[name] = entry.card
        return LoadedVariant(name, entry.model, entry.tokenizer, entry.image_size, entry.card.to_dict())

    @property
    def default_tasks(self) -> list[str]:
        """The tasks the models were tuned on (union), in OFA's task order."""
        from robustbench_ofa.data.types import TASKS

        tasks: set[str] = set()
        for name in self.names:
            if name not in self.cards:
                self.load(name)
            tasks.update(self.cards[name].tasks)
        return [t for t in TASKS if t in tasks] or ["ve"]

    def variant_info(self) -> dict:
        out = {}
        for name in self.names:
            card = self.cards.get(name)
            if card is not None:
                out[name] = {"name": name, "method": card.method, "trainable_params": card.trainable_params,
                             "total_params": card.total_params, "hparams": card.hparams, "sha256": card.sha256,
                             "clean": card.clean, "base": card.base}
        return out


def resolve_models(specs: Sequence[str] | None, home: str | None, device: str = "cpu",
                   progress: bool = True) -> Catalog:
    """Zoo names or paths; none given -> the embedded zoo's tuned variants (built on first use)."""
    from robustbench_ofa import zoo

    if specs:
        names = [s for spec in specs for s in spec.split(",") if s]
        if len(set(names)) != len(names):
            raise RobustOFAError("--model: a model is listed twice")
        catalog = Catalog(names, home, device, progress)
        for name in names:  # fail on an unknown name before any attack runs
            catalog.load(name)
        return catalog
    from robustbench_ofa.zoo.recipe import default_recipe

    recipe = default_recipe()
    zoo.ensure_embedded(home, progress=progress, recipe=recipe)
    names = [n for n in zoo.embedded_names(recipe) if n != recipe.model_name("base")]
    return Catalog(names, home, device, progress)


@dataclass
class DataChoice:
    spec: str | None

    def describe(self) -> str:
        return self.spec or "synthetic:downstream_test (embedded zoo recipe)"

    def samples(self, task: str, n: int):
        from robustbench_ofa import zoo
        from robustbench_ofa.zoo.recipe import default_recipe

        recipe = default_recipe()
        if self.spec is None:
            return zoo.embedded_test_samples(task, n, recipe)
        from robustbench_ofa.data.sources import parse_source

        samples = parse_source(self.spec).load(task, n, scene=recipe.scene_config(), seed=recipe.data_seed)
        if not samples:
            raise RobustOFAError(f"--data {self.spec}: no {task} samples")
        return samples


def resolve_data(spec: str | None, catalog: Catalog, tasks: Sequence[str]) -> DataChoice:
    choice = DataChoice(spec)
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

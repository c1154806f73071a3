"""Building the embedded zoo: generated data -> BPE -> pretrained base -> tuned variants -> cards.

Why built and not downloaded: the benchmark must run with no network and no weights anywhere. The build
is CPU-only, deterministic (seeded, single-process data, deterministic algorithms, fixed thread count)
and so gives bit-identical weight files when repeated on the same machine from the same recipe.

Crash safety: the zoo lives in ``HOME/zoo/<prefix>-<fingerprint>/``. Every artefact (tokenizer, base,
each variant) is written to ``NAME.tmp/`` and renamed into place when complete, so a folder that exists
is whole; training runs checkpoint under ``work/`` and resume after a crash. The zoo counts as built only
when ``zoo.json`` (written last, atomically) exists, and readers use nothing else before that.
A file lock keeps two processes from building the same zoo at once.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustbench_ofa.cards import package_versions
from robustbench_ofa.io import atomic_write_text
from robustbench_ofa.training.loop import torch_threads
from robustbench_ofa.training.parallel import single
from robustbench_ofa.training.pipeline import RunInfo, fresh_stage, publish_stage, train_evaluate_save
from robustbench_ofa.zoo.home import ZOO_DIR, ensure_home
from robustbench_ofa.zoo.recipe import VariantRecipe, ZooRecipe, default_recipe

INDEX_FILE = "zoo.json"
TOKENIZER_DIR = "tokenizer"
BASE_DIR = "base"
VARIANTS_DIR = "variants"
WORK_DIR = "work"


def zoo_root(home: str | Path | None = None, recipe: ZooRecipe | None = None) -> Path:
    """Folder of the zoo built from ``recipe`` under ``home`` (it may not exist yet)."""
    recipe = recipe or default_recipe()
    return ensure_home(home) / ZOO_DIR / f"{recipe.prefix}-{recipe.fingerprint()[:12]}"


def is_built(root: Path) -> bool:
    return (root / INDEX_FILE).is_file()


def artefact_dir(root: Path, name: str) -> Path:
    """Folder of one model of the zoo: ``base`` or a variant name."""
    return root / BASE_DIR if name == "base" else root / VARIANTS_DIR / name


# ---------------------------------------------------------------------------------------------------
# Determinism


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic(num_threads: int | None) -> Iterator[None]:
    """Deterministic kernels, a fixed thread count and one process for the build; the caller's settings
    come back after.

    Without torch's NaN-filling of every new uninitialised tensor, which deterministic mode turns on as a
    debugging aid: no kernel the build runs reads memory it did not write (the zoo's weights are
    bit-identical with and without it, tested), and filling cost about 10 % of each pretraining step
    (some 1,200 fills per step, 20 % of the profiled CPU time).
    """
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    import torch.utils.deterministic as flags  # not imported by ``import torch``

    prev_fill = flags.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True, warn_only=True)
    flags.fill_uninitialized_memory = False
    try:  # one process builds (under torchrun, rank 0 while the others wait: ``Dist.main_first``)
        with torch_threads(num_threads or None), single():
            yield
    finally:
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
        flags.fill_uninitialized_memory = prev_fill


@contextlib.contextmanager
def _build_lock(root: Path) -> Iterator[None]:
    """An exclusive lock on ``root/.lock`` (no-op where fcntl is missing)."""
    root.mkdir(parents=True, exist_ok=True)
    handle = open(root / ".lock", "w")
    try:
        try:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - non-POSIX
            pass
        yield
    finally:
        handle.close()


# ---------------------------------------------------------------------------------------------------
# Steps


def _say(message: str, progress: bool) -> None:
    if progress:
        print(f"robust-ofa: {message}", file=sys.stderr, flush=True)


def _data(recipe: ZooRecipe, split: str, n: int | dict[str, int]) -> dict[str, list]:
    """Generated samples of every recipe task; ``n`` is one count for all tasks or a count per task."""
    from robustbench_ofa.data.synthetic import generate

    scene = recipe.scene_config()
    sizes = n if isinstance(n, dict) else {t: n for t in recipe.tasks}
    return {t: generate(t, split, sizes[t], scene, recipe.data_seed) for t in recipe.tasks}


def _tasks(recipe: ZooRecipe, tokenizer) -> dict[str, Any]:
    from robustbench_ofa.tasks import get_task

    return {t: get_task(t, tokenizer, recipe.image_size, beam=recipe.eval_beam) for t in recipe.tasks}


def build_tokenizer(root: Path, recipe: ZooRecipe):
    """BPE on every text the generator can emit plus the OFA instruction templates of every task."""
    from robustbench_ofa.data.synthetic import corpus_texts
    from robustbench_ofa.models.tokenizer import OFATokenizer, train_bpe
    from robustbench_ofa.tasks import instruction, task_names

    final = root / TOKENIZER_DIR
    if not final.is_dir():
        tmp = fresh_stage(final)
        texts = corpus_texts() + [instruction(t, "x") for t in task_names()]
        train_bpe(texts, tmp, vocab_size=recipe.bpe_vocab_size, num_codes=0, num_bins=recipe.num_bins)
        publish_stage(tmp, final)
    return OFATokenizer.from_pretrained(final)


def _data_specs(recipe: ZooRecipe, split: str, n: int | dict[str, int]) -> dict[str, Any]:
    counts = ",".join(f"{t}={k}" for t, k in n.items()) if isinstance(n, dict) else str(n)
    return {"train": f"synthetic:{split}:{counts}", "eval": f"synthetic:downstream_test:{recipe.eval_n}",
            "eval_beam": recipe.eval_beam, "scene": {"image_size": recipe.image_size, **recipe.scene},
            "data_seed": recipe.data_seed}


def build_base(root: Path, recipe: ZooRecipe, tokenizer, eval_data, progress: bool) -> None:
    """Pretrain the base model from scratch, multi-task, on the pretraining split."""
    from robustbench_ofa.models import OFAConfig, OFAModel
    from robustbench_ofa.training.init import init_bin_embeddings

    final = artefact_dir(root, "base")
    if final.is_dir():
        return
    t0 = time.perf_counter()
    seed_everything(recipe.seed)
    config = OFAConfig(**{**recipe.model, "vocab_size": tokenizer.vocab_size})
    model = OFAModel(config)
    if recipe.smooth_bins:
        init_bin_embeddings(model, tokenizer, seed=recipe.seed)
    tasks = _tasks(recipe, tokenizer)
    train_cfg = recipe.pretrain.replace(checkpoint_every=recipe.pretrain.checkpoint_every or 200)
    info = RunInfo(
        name=recipe.model_name("base"), tasks=list(recipe.tasks), source="embedded", seed=recipe.seed,
        image_size=recipe.image_size, data=_data_specs(recipe, "train", recipe.pretrain_sizes()),
        hparams={k: v for k, v in config.to_dict().items() if k in recipe.model or k == "vocab_size"},
        notes=lambda result: f"pretrained from scratch for {result.steps} steps; clean = zero-shot on "
                             "downstream_test (held-out colour/shape pairs)",
    )
    train_evaluate_save(model, tasks, _data(recipe, "train", recipe.pretrain_sizes()), train_cfg, info, final,
                        eval_data=eval_data, eval_batch_size=recipe.eval_batch_size, tokenizer=tokenizer,
                        work=root / WORK_DIR / "base", atomic=True, progress=progress,
                        desc=f"pretrain {recipe.model_name('base')}", started=t0)


def build_variant(root: Path, recipe: ZooRecipe, index: int, tokenizer, train_data, eval_data,
                  progress: bool, spec: VariantRecipe | None = None) -> None:
    """Tune one variant of the base multi-task on the downstream training split (``spec``: an on-demand
    variant, seeded after the standard ones; default ``recipe.variants[index]``)."""
    from robustbench_ofa.models.loading import load_pretrained
    from robustbench_ofa.tuning import get_method

    spec = spec or recipe.variants[index]
    final = artefact_dir(root, spec.name)
    if final.is_dir():
        return
    t0 = time.perf_counter()
    base_dir = artefact_dir(root, "base")
    model = load_pretrained(base_dir)
    seed_everything(recipe.seed + 1 + index)
    get_method(spec.method, **spec.hparams).apply(model)
    tasks = _tasks(recipe, tokenizer)
    train_cfg = spec.train.replace(checkpoint_every=spec.train.checkpoint_every or 100)
    info = RunInfo(name=recipe.model_name(spec.name), tasks=list(recipe.tasks), source="embedded",
                   base=recipe.model_name("base"), seed=recipe.seed + 1 + index, image_size=recipe.image_size,
                   data=_data_specs(recipe, "downstream_train", recipe.downstream_n))
    train_evaluate_save(model, tasks, train_data, train_cfg, info, final, eval_data=eval_data,
                        eval_batch_size=recipe.eval_batch_size, base_dir=base_dir, work=root / WORK_DIR / spec.name,
                        atomic=True, progress=progress, desc=f"tune {recipe.model_name(spec.name)}", started=t0)


def _write_index(root: Path, recipe: ZooRecipe, seconds: float) -> None:
    index = {"recipe": recipe.to_dict(), "fingerprint": recipe.fingerprint(), "models": recipe.names,
             "build_seconds": round(seconds, 1), "versions": package_versions()}
    atomic_write_text(root / INDEX_FILE, json.dumps(index, indent=2, sort_keys=True, default=str) + "\n")


def build_zoo(root: Path, recipe: ZooRecipe, progress: bool = True) -> Path:
    """Build (or finish building) the zoo of ``recipe`` in ``root``; returns ``root``."""
    t0 = time.perf_counter()
    stages = 2 + len(recipe.variants)
    with _build_lock(root), deterministic(recipe.num_threads):
        if is_built(root):
            return root
        _say(f"building the {recipe.prefix} model zoo in {root} (first use; an interrupted build resumes)",
             progress)
        _say(f"[1/{stages}] tokenizer and data", progress)
        tokenizer = build_tokenizer(root, recipe)
        eval_data = _data(recipe, "downstream_test", recipe.eval_n)
        _say(f"[2/{stages}] pretrain {recipe.model_name('base')}", progress)
        build_base(root, recipe, tokenizer, eval_data, progress)
        if recipe.variants:
            train_data = _data(recipe, "downstream_train", recipe.downstream_n)
        for i, spec in enumerate(recipe.variants):
            _say(f"[{3 + i}/{stages}] tune {recipe.model_name(spec.name)} ({spec.method})", progress)
            build_variant(root, recipe, i, tokenizer, train_data, eval_data, progress)
        shutil.rmtree(root / WORK_DIR, ignore_errors=True)
        _write_index(root, recipe, time.perf_counter() - t0)
    _say(f"{recipe.prefix} model zoo ready ({time.perf_counter() - t0:.0f} s)", progress)
    return root


def ensure_on_demand(root: Path, recipe: ZooRecipe, short: str, progress: bool = True) -> Path:
    """Build on-demand variant ``short`` of a built zoo (same base, tokenizer and data) if it is missing."""
    final = artefact_dir(root, short)
    if final.is_dir():
        return final
    index, spec = recipe.variant(short)
    t0 = time.perf_counter()
    with _build_lock(root), deterministic(recipe.num_threads):
        if not final.is_dir():
            _say(f"building {recipe.model_name(short)} ({spec.method}, {spec.train.adv} adversarial training) "
                 f"on demand in {root}", progress)
            tokenizer = build_tokenizer(root, recipe)
            eval_data = _data(recipe, "downstream_test", recipe.eval_n)
            train_data = _data(recipe, "downstream_train", recipe.downstream_n)
            build_variant(root, recipe, index, tokenizer, train_data, eval_data, progress, spec=spec)
            shutil.rmtree(root / WORK_DIR, ignore_errors=True)
            _say(f"{recipe.model_name(short)} ready ({time.perf_counter() - t0:.0f} s)", progress)
    return final


def ensure_embedded(home: str | Path | None = None, progress: bool = True, recipe: ZooRecipe | None = None) -> Path:
    """The folder of the embedded zoo, building it first if needed (a no-op when already built)."""
    recipe = recipe or default_recipe()
    root = zoo_root(home, recipe)
    if is_built(root):
        return root
    return build_zoo(root, recipe, progress)

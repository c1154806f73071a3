"""One pipeline for every trained model: train -> evaluate -> save -> one card.

The embedded zoo (``zoo.build``) and ``robust-ofa train pretrain|tune`` both call
``train_evaluate_save``; before, each wrote its own ~15-field card and the two had drifted. What the
caller knows about a run (its name, tasks, data specs, seed, ...) comes in a ``RunInfo``; everything the
pipeline can see for itself (method, hyper-parameters of a tuned variant, training config, clean metrics,
parameter counts, weight hashes, package versions, time) it puts on the card itself.

The caller builds the model (and applies the tuning method) first, so the pipeline never changes what
the random number generators have produced by the time training starts.

Two kinds of output:

* a **base model** (no tuning method applied): ``config.json`` + ``model.safetensors`` (+ the tokenizer
  when given) and a card with ``sha256 = {"model": ...}``;
* a **tuned variant** (``model.tuning_method`` set, ``base_dir`` given): the trainable tensors and a card
  with ``sha256 = {"base": ..., "variant": ...}`` (``tuning.variant.save_variant``). The base hash is
  always the SHA-256 of the base folder's weight file (``models.loading.weight_file``).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from robustbench_ofa.cards import ModelCard, package_versions
from robustbench_ofa.data.types import Sample
from robustbench_ofa.models.loading import file_sha256, weight_file
from robustbench_ofa.tasks.base import Task
from robustbench_ofa.training.config import TrainConfig
from robustbench_ofa.training.loop import METRICS_FILE, TrainResult, evaluate_tasks, remove_checkpoint, train
from robustbench_ofa.training.parallel import current
from robustbench_ofa.tuning.variant import save_variant

__all__ = ["PipelineResult", "RunInfo", "fresh_stage", "publish_stage", "train_evaluate_save", "trained_on"]


def trained_on(train_data: Mapping[str, Sequence[Sample]]) -> dict[str, dict[str, Any]]:
    """Per task, how many samples were trained on and a digest of their ids: what ``--n``, the answer
    set's filter and the data file did, whatever the spec's spelling (``evaluation.twins`` compares it)."""
    import hashlib

    return {t: {"n": len(samples),
                "ids": hashlib.sha256("\n".join(sorted(str(s.uid) for s in samples)).encode()).hexdigest()[:16]}
            for t, samples in sorted(train_data.items())}


@dataclass
class RunInfo:
    """What the caller knows about a run that the pipeline cannot see; it goes on the card."""

    name: str
    tasks: list[str]
    #: Data specs (training/eval sources, scene settings, ...), stored as given.
    data: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    image_size: int | None = None
    #: "embedded" (the zoo) or "trained" (``robust-ofa train``).
    source: str = "trained"
    #: The base's name (tuned variants).
    base: str | None = None
    #: Base models: the architecture fields to record (default: the whole model config).
    hparams: dict[str, Any] | None = None
    #: Free text, or a function of the training result (e.g. to say how many steps were run).
    notes: str | Callable[[TrainResult], str] = ""
    #: Answer sets to store with the model (task -> answers), for tasks whose set came from the data or a
    #: file rather than the task's default (``tasks.answers``).
    answers: dict[str, list[str]] = field(default_factory=dict)
    #: The study record (``robustbench_ofa.study``) when a study file made this model.
    study: dict[str, Any] = field(default_factory=dict)


@dataclass
class PipelineResult:
    card: ModelCard
    train: TrainResult
    #: The folder that holds the model (``out``).
    path: Path


def fresh_stage(final: Path) -> Path:
    """An empty ``NAME.tmp`` folder next to ``final`` to build an artefact in (a stale one is removed)."""
    tmp = final.with_name(final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def publish_stage(tmp: Path, final: Path) -> None:
    """Rename a completed artefact folder into place (replacing a stale one)."""
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def train_evaluate_save(
    model: nn.Module,
    tasks: Mapping[str, Task],
    train_data: Mapping[str, Sequence[Sample]],
    config: TrainConfig,
    info: RunInfo,
    out: str | Path,
    *,
    eval_data: Mapping[str, Sequence[Sample]] | None = None,
    eval_batch_size: int | None = None,
    base_dir: str | Path | None = None,
    tokenizer: Any = None,
    work: str | Path | None = None,
    atomic: bool = False,
    progress: bool = True,
    desc: str = "train",
    resume: bool = True,
    started: float | None = None,
) -> PipelineResult:
    """Train ``model``, evaluate it on ``eval_data`` (if any), save it in ``out`` with its one card.

    ``work`` is the training folder (checkpoints, ``metrics.jsonl``; default ``out``); its
    ``metrics.jsonl`` is copied into ``out`` when the two differ, and its checkpoint is removed once the
    model is saved. With ``atomic`` the model is written to ``out.tmp`` and renamed to ``out`` when
    complete (the zoo's crash safety: a folder that exists is whole); ``work`` must then be another folder.
    ``eval_batch_size`` defaults to ``config.eval_batch_size``. The card's ``build_seconds`` run from
    ``started`` (a ``time.perf_counter()`` reading: the zoo counts its data and model set-up too) or from
    this call to the card.
    """
    out = Path(out)
    work = Path(work) if work is not None else out
    if atomic and work == out:
        raise ValueError("train_evaluate_save: atomic=True needs a work folder other than out")
    method = getattr(model, "tuning_method", None)
    if method is not None and base_dir is None:
        raise ValueError("train_evaluate_save: a tuned variant needs its base_dir")
    t0 = time.perf_counter() if started is None else started
    # ``eval_every``: the trainer evaluates during the run too (its records go to metrics.jsonl); without it
    # the one evaluation is the final one below, so the trainer gets no eval data (nothing evaluated twice)
    result = train(model, tasks, train_data, config, out_dir=work, progress=progress, desc=desc, resume=resume,
                   eval_data=eval_data if config.eval_every else None)
    dist = current()  # under torchrun rank 0 evaluates and writes (an error there stops every rank) ...
    saved = dist.raise_together(lambda: _evaluate_save(
        model, tasks, train_data, config, info, out, result, eval_data=eval_data, eval_batch_size=eval_batch_size,
        base_dir=base_dir, tokenizer=tokenizer, work=work, atomic=atomic, t0=t0), dist.is_main)
    if saved is None:  # ... and the other ranks read what it wrote
        card = ModelCard.read(out)
        card.path = str(out.resolve())
        saved = PipelineResult(card=card, train=result, path=out)
    return saved


def _evaluate_save(model: nn.Module, tasks: Mapping[str, Task], train_data: Mapping[str, Sequence[Sample]],
                   config: TrainConfig, info: RunInfo, out: Path, result: TrainResult, *,
                   eval_data: Mapping[str, Sequence[Sample]] | None, eval_batch_size: int | None,
                   base_dir: str | Path | None, tokenizer: Any, work: Path, atomic: bool,
                   t0: float) -> PipelineResult:
    """``train_evaluate_save`` after training: the clean evaluation, the model and its card."""
    method = getattr(model, "tuning_method", None)
    batch = eval_batch_size or config.eval_batch_size
    if eval_data and result.metrics and batch == config.eval_batch_size:
        clean = result.metrics  # the trainer's evaluation at the last step (``eval_every``): the same call
    else:
        clean = evaluate_tasks(model, tasks, eval_data, batch) if eval_data else {}
    target = fresh_stage(out) if atomic else out
    target.mkdir(parents=True, exist_ok=True)
    notes = info.notes(result) if callable(info.notes) else info.notes
    card = ModelCard(name=info.name, method="pretrain" if method is None else method.name, tasks=list(info.tasks),
                     base=info.base, train=config.to_dict(),
                     data={**info.data, "train_samples": trained_on(train_data)}, clean=clean,
                     versions=package_versions(), seed=info.seed, image_size=info.image_size,
                     source=info.source, status="built", notes=notes,
                     study=dict(info.study), adversarial=config.adversarial() or {},
                     train_grad_evals=result.grad_evals if result.resumed_from == 0 else None,
                     execution=dict(result.execution))
    if info.answers:
        from robustbench_ofa.tasks.answers import write_answers

        card.answers = {t: write_answers(target, t, a) for t, a in info.answers.items()}
    if work != target and (work / METRICS_FILE).is_file():
        shutil.copy(work / METRICS_FILE, target / METRICS_FILE)
    if method is None:
        model.save_pretrained(target)
        if tokenizer is not None:
            tokenizer.save_pretrained(target)
        n_params = sum(p.numel() for p in model.parameters())
        card.hparams = dict(info.hparams) if info.hparams is not None else model.config.to_dict()
        card.trainable_params = card.total_params = n_params
        card.sha256 = {"model": file_sha256(weight_file(target))}
        card.build_seconds = round(time.perf_counter() - t0, 1)
        card.write(target)
    else:
        card.build_seconds = round(time.perf_counter() - t0, 1)
        save_variant(model, target, name=info.name, task=list(info.tasks), base_dir=base_dir, card=card)
    card = ModelCard.read(target)  # what is on disk (JSON types)
    if atomic:
        publish_stage(target, out)
    remove_checkpoint(work)
    card.path = str(out.resolve())
    return PipelineResult(card=card, train=result, path=out)

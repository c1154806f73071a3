"""The trainer: multi-task OFA training with AdamW, warm-up/decay, clipping, logging and resume.

One loop serves pretraining from scratch and every tuning method: it optimises whatever parameters have
``requires_grad`` (a tuning method has already frozen the rest), so a prompt-tuning run's optimiser only
ever sees the prompt generators. Each batch comes from one task (OFA's tasks have different target
formats) and tasks are interleaved (see ``schedule.BatchPlan``).

The loss is the token-mean label-smoothed NLL of the batch (``Task.loss`` returns per-sample sums),
so grounding's four bin tokens and VE's one answer token weigh alike per token, as in OFA's criterion.

Resumability: with ``checkpoint_every`` and an ``out_dir`` the loop writes atomic checkpoints (see
``checkpoint.py``) and a rerun with the same arguments continues from the last one; because the batch
plan and learning rate are functions of the step and every RNG state is restored, the resumed run ends
with the same weights as an uninterrupted one. A final checkpoint is written at the last step so a
crash between training and saving the result does not repeat the training.

Data parallelism and gradient accumulation (``parallel``): a step's global batch is cut into
micro-batches over the ranks of a torchrun job; each micro-batch's loss is normalised by the token count
of the whole global batch, so the summed gradient, and the logged loss, are those of the unsplit step.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustbench_ofa.data.types import Sample
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.tasks import TASK_REGISTRY
from robustbench_ofa.tasks.base import Task
from robustbench_ofa.training import parallel
from robustbench_ofa.training.adversarial import adversarial_batch, attacked_count, trades_term
from robustbench_ofa.training.checkpoint import (
    checkpoint_path,
    load_checkpoint,
    restore,
    rng_state,
    save_checkpoint,
)
from robustbench_ofa.training.config import TrainConfig
from robustbench_ofa.training.schedule import lr_factor, make_plan

METRICS_FILE = "metrics.jsonl"

#: The headline clean metric of each task (the value zoo cards and ablation tables lead with), as the
#: task classes declare it (``Task.main_metric``).
MAIN_METRIC: dict[str, str] = {name: TASK_REGISTRY.get(name).main_metric for name in TASK_REGISTRY}

#: Called after every optimiser step with (completed steps, the step's log record).
Callback = Callable[[int, dict[str, Any]], None]


@dataclass
class TrainResult:
    """What a run did: steps, time, last logged loss, final clean metrics per task (if eval data)."""

    steps: int
    seconds: float
    final_loss: float
    resumed_from: int = 0
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    #: Sample forward+backward passes of the steps this call ran (training compute: a plain step costs 1
    #: per sample; PGD-AT with k steps k + 1 per attacked sample, TRADES k + 3).
    grad_evals: int = 0
    #: How the run was executed (``parallel.execution_facts``: world size, micro-batch, accumulation, ...).
    execution: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------
# Evaluation


@torch.no_grad()
def evaluate_clean(model: nn.Module, task: Task, samples: Sequence[Sample], batch_size: int = 64,
                   device: str | torch.device | None = None, progress: bool = False) -> dict[str, float]:
    """Clean metrics of ``model`` on ``samples`` for one task (fractions in [0, 1]).

    The metrics are the task's (``Task.metrics``: grounding ``acc@0.5`` and ``miou``; ve ``accuracy``; vqa
    ``vqa_accuracy`` and ``accuracy``; caption ``cider`` and ``bleu4``). Every result also carries ``n``.
    The model's train/eval mode is restored afterwards.
    """
    if not samples:
        raise RobustOFAError(f"evaluate_clean: no {task.name} samples to evaluate")
    device = device or next(model.parameters()).device
    task.prepare(list(samples))
    was_training = model.training
    model.eval()
    # samples outside a closed task's answer set are scored (always wrong), not refused
    stand_in = getattr(task, "stand_in_for_unanswerable", None)
    if stand_in is not None:
        task.stand_in_for_unanswerable = True
    preds = []
    try:
        bar = _progress(len(samples), f"eval {task.name}", progress, unit="sample")
        for start in range(0, len(samples), batch_size):
            chunk = list(samples[start:start + batch_size])
            preds += task.predict(model, task.collate(chunk).to(device))
            bar.update(len(chunk))
        bar.close()
    finally:
        model.train(was_training)
        if stand_in is not None:
            task.stand_in_for_unanswerable = stand_in
    out = {k: round(float(v), 6) for k, v in task.metrics(preds, list(samples)).items()}
    out["n"] = len(preds)
    return out


def evaluate_tasks(model: nn.Module, tasks: Mapping[str, Task], data: Mapping[str, Sequence[Sample]],
                   batch_size: int = 64, progress: bool = False) -> dict[str, dict[str, float]]:
    """``evaluate_clean`` for every task that has data."""
    return {name: evaluate_clean(model, tasks[name], samples, batch_size, progress=progress)
            for name, samples in data.items() if samples}


# ---------------------------------------------------------------------------------------------------
# Training


def _progress(total: int, desc: str, enabled: bool, initial: int = 0, unit: str = "step"):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True,
                leave=False, mininterval=0.5)


def _check_data(tasks: Mapping[str, Task], data: Mapping[str, Sequence[Sample]]) -> None:
    if not data or not any(len(v) for v in data.values()):
        raise RobustOFAError("train: no training samples")
    for name in data:
        if name not in tasks:
            raise RobustOFAError(f"train: data given for task '{name}' but no such task was set up")


def run_key(model: nn.Module, config: TrainConfig, data: Mapping[str, Sequence[Sample]]) -> dict[str, Any]:
    """Identity of a run, stored in its checkpoints: config, tuning method and data (sizes and uids)."""
    method = getattr(model, "tuning_method", None)
    import hashlib

    digest = hashlib.sha256()
    for name, samples in data.items():
        digest.update(name.encode())
        for s in samples:
            digest.update(s.uid.encode() + b"\0")
    return {
        "config": config.resume_key(),
        "method": None if method is None else {"name": method.name, "hparams": method.config.to_dict()},
        "data": {name: len(samples) for name, samples in data.items()},
        "data_sha256": digest.hexdigest(),
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }


class _MetricsLog:
    """Append-only JSONL log; on resume, records past the checkpoint's step are dropped (they will recur)."""

    def __init__(self, out_dir: Path | None, resume_step: int):
        self.path = None if out_dir is None else out_dir / METRICS_FILE
        if self.path is None:
            return
        if resume_step and self.path.exists():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            self.path.write_text("".join(line + "\n" for line in kept))
        elif self.path.exists():
            self.path.unlink()

    def write(self, record: dict[str, Any]) -> None:
        if self.path is not None:
            with open(self.path, "a") as handle:
                handle.write(json.dumps(record, sort_keys=True) + "\n")


def _autocast(config: TrainConfig):
    if config.use_bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; biases and other 1-D tensors (norms, scales) get no weight decay."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or name.endswith(".bias") else decay).append(p)
    if not decay and not no_decay:
        raise RobustOFAError("train: the model has no trainable parameters (was a tuning method applied?)")
    groups = [g for g in ({"params": decay, "weight_decay": config.weight_decay},
                          {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
    kwargs = dict(lr=config.lr, betas=tuple(config.betas), eps=config.eps)
    try:  # the fused kernel is 2-3x faster on CPU than the per-tensor loop (torch >= 2.4)
        return torch.optim.AdamW(groups, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups, **kwargs)


@contextlib.contextmanager
def torch_threads(n: int | None):
    """``torch.set_num_threads(n)`` for the block, the caller's count restored after: the thread count sets
    the reduction order of CPU kernels, so a training run's own setting must not leak into the arithmetic
    of whatever runs next in the process (an evaluation, a test)."""
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n is not None:
            torch.set_num_threads(previous)


def peak_memory(device: torch.device) -> dict[str, float]:
    """Rank 0's peak memory so far, for the log (what a user picks ``--micro-batch-size`` by): on CUDA
    the most the caching allocator held for tensors (``peak_gpu_gib``), and on every device the process's
    peak resident set (``peak_rss_gib``: model, data and activations on CPU; host memory on a GPU run)."""
    import resource
    import sys

    scale = 2**30 if sys.platform == "darwin" else 2**20  # ru_maxrss: bytes on macOS, KiB on Linux
    out = {"peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale, 3)}
    if device.type == "cuda":
        out["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
    return out


def train(
    model: nn.Module,
    tasks: Mapping[str, Task],
    train_data: Mapping[str, Sequence[Sample]],
    config: TrainConfig,
    *,
    out_dir: str | Path | None = None,
    eval_data: Mapping[str, Sequence[Sample]] | None = None,
    progress: bool = True,
    desc: str = "train",
    callbacks: Sequence[Callback] = (),
    resume: bool = True,
) -> TrainResult:
    """Train ``model`` in place on ``train_data`` ({task: samples}) and return a summary.

    ``out_dir`` receives ``metrics.jsonl`` and, with ``config.checkpoint_every``, ``checkpoint.pt``;
    with ``resume`` an existing checkpoint of the same run is continued. ``eval_data`` is evaluated
    every ``config.eval_every`` steps and at the end. Runs with ``config.num_threads`` torch threads and
    restores the caller's count afterwards.

    Data-parallel: called inside ``training.parallel.job(dist)`` on every rank of a torchrun job
    (``dist`` from ``robustbench_ofa.distributed.from_env``), it trains one model with DDP; the global
    ``config.batch_size`` is split as ``config.micro_batch_size`` says (``parallel.StepSplit``).
    """
    with torch_threads(config.num_threads):
        return _train(model, tasks, train_data, config, out_dir=out_dir, eval_data=eval_data, progress=progress,
                      desc=desc, callbacks=callbacks, resume=resume)


def _train(
    model: nn.Module,
    tasks: Mapping[str, Task],
    train_data: Mapping[str, Sequence[Sample]],
    config: TrainConfig,
    *,
    out_dir: str | Path | None,
    eval_data: Mapping[str, Sequence[Sample]] | None,
    progress: bool,
    desc: str,
    callbacks: Sequence[Callback],
    resume: bool,
) -> TrainResult:
    """``train``'s body, with the thread count already set. Under torchrun (a process group made by the
    command) every rank runs it; rank 0 alone logs, evaluates and writes checkpoints."""
    _check_data(tasks, train_data)
    ctx = parallel.current()
    split = parallel.StepSplit(config.batch_size, ctx.world, config.micro_batch_size)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
    device = torch.device(config.device)
    model.to(device)
    plan = make_plan({t: len(s) for t, s in train_data.items()}, config.batch_size, config.seed, config.mix)
    total = config.total_steps(plan.steps_per_epoch)
    optimizer = make_optimizer(model, config)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    key = run_key(model, config, train_data)
    parallel.check_same_run(ctx, model, key)
    if config.activation_checkpointing:
        if not hasattr(model, "set_activation_checkpointing"):
            raise RobustOFAError(f"--activation-checkpointing: {type(model).__name__} does not support it")
        model.set_activation_checkpointing(True)
    ckpt = checkpoint_path(out) if out is not None else None
    start = _resume(model, optimizer, ckpt, key, config, ctx) if resume and ckpt is not None else None
    if start is None:
        start = 0
        torch.manual_seed(parallel.rank_seed(config.seed, ctx.rank))
    ddp = parallel.wrap(model, ctx, device) if ctx.active else None
    execution = parallel.execution_facts(split, ctx, model, config.activation_checkpointing)
    log = _MetricsLog(out if ctx.is_main else None, start)
    pad = model.config.pad_token_id
    bar = _progress(total, desc, progress and ctx.is_main, initial=start)
    t_start = time.perf_counter()
    window_loss, window_tokens, window_samples, window_t0 = 0.0, 0, 0, time.perf_counter()
    last_loss = math.nan
    grad_evals = 0  # sample forward+backward passes (training compute; a resumed run counts from its restart)
    result_metrics: dict[str, dict[str, float]] = {}
    model.train()
    try:
        for step in range(start, total):
            batches = plan.step(step)
            optimizer.zero_grad(set_to_none=True)
            sums = _run_step(model, ddp, tasks, train_data, batches, config, split, ctx, step, pad, device)
            step_loss, step_tokens, step_samples, step_evals = sums
            grad_evals += int(step_evals)
            if config.clip_norm > 0:
                grad_norm = float(torch.nn.utils.clip_grad_norm_(params, config.clip_norm))
            else:
                grad_norm = float(torch.nn.utils.clip_grad_norm_(params, float("inf")))
            lr = config.lr * lr_factor(step, total, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.step()
            done = step + 1

            window_loss += step_loss
            window_tokens += step_tokens
            window_samples += step_samples
            record: dict[str, Any] = {"step": done, "task": "+".join(b.task for b in batches),
                                      "loss": round(step_loss / max(step_tokens, 1), 5),
                                      "lr": lr, "grad_norm": round(grad_norm, 4)}
            bar.update(1)
            if done % max(config.log_every, 1) == 0 or done == total:
                elapsed = time.perf_counter() - window_t0
                last_loss = window_loss / max(window_tokens, 1)
                sps = window_samples / max(elapsed, 1e-9)
                log.write({"step": done, "epoch": round(done / plan.steps_per_epoch, 3),
                           "loss": round(last_loss, 5), "lr": lr, "grad_norm": round(grad_norm, 4),
                           "samples_per_s": round(sps, 1), "elapsed_s": round(time.perf_counter() - t_start, 2),
                           **peak_memory(device)})
                bar.set_postfix(loss=f"{last_loss:.3f}", samples_per_s=f"{sps:.0f}")
                window_loss, window_tokens, window_samples, window_t0 = 0.0, 0, 0, time.perf_counter()
            if (ctx.is_main and eval_data
                    and (done == total or (config.eval_every and done % config.eval_every == 0))):
                result_metrics = evaluate_tasks(model, tasks, eval_data, config.eval_batch_size)
                log.write({"step": done, "eval": result_metrics})
                model.train()
            if ckpt is not None and config.checkpoint_every and (done % config.checkpoint_every == 0
                                                                 or done == total):
                ranks = ctx.all_gather(rng_state()) if ctx.active else None  # every rank's dropout stream
                if ctx.is_main:
                    save_checkpoint(out, model=model, optimizer=optimizer, step=done, total=total, run_key=key,
                                    rng_ranks=ranks)
            for callback in callbacks:
                callback(done, record)
    finally:
        bar.close()
        if config.activation_checkpointing:
            model.set_activation_checkpointing(False)
    if ctx.is_main and eval_data and not result_metrics:  # resumed at the very end: evaluate once more
        result_metrics = evaluate_tasks(model, tasks, eval_data, config.eval_batch_size)
    model.eval()
    return TrainResult(steps=total, seconds=round(time.perf_counter() - t_start, 2), final_loss=last_loss,
                       resumed_from=start, metrics=result_metrics, grad_evals=grad_evals, execution=execution)


def _resume(model: nn.Module, optimizer: torch.optim.Optimizer, ckpt: Path, key: dict[str, Any],
            config: TrainConfig, ctx: parallel.Dist) -> int | None:
    """Continue from ``ckpt`` if rank 0 sees one (None: start afresh). Every rank reads the file (the
    output folder must be shared by the ranks); a checkpoint of the same world size restores each rank's
    own random state (the resumed run is then the uninterrupted one), of another world size every rank
    draws dropout from a fresh stream of (seed, step, rank): same data, schedule and weights, new masks."""
    found = ctx.agree(ckpt.exists, main_only=True)
    if not found:
        return None

    def load() -> dict[str, Any]:
        if not ckpt.exists():
            raise RobustOFAError(f"{ckpt}: rank {ctx.rank} does not see the checkpoint rank 0 resumes from; "
                                 "every rank must see the output folder (a shared filesystem)")
        return load_checkpoint(ckpt, key)

    state = ctx.raise_together(load, True)
    start = restore(model, optimizer, state, ckpt, rank=ctx.rank, world=ctx.world)
    if int(state.get("world", 1)) != ctx.world:
        from robustbench_ofa.seeds import sample_seed

        torch.manual_seed(sample_seed(config.seed, "resume", start, ctx.rank))
    return start


def _all_sum(values: list[float], ctx: parallel.Dist, device: torch.device) -> list[float]:
    """Elementwise sum of ``values`` over the ranks (float64: exact for counts)."""
    if not ctx.active:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device if ctx.backend == "nccl" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


def _run_step(model: nn.Module, ddp: nn.Module | None, tasks: Mapping[str, Task],
              train_data: Mapping[str, Sequence[Sample]], batches: Sequence[Any], config: TrainConfig,
              split: parallel.StepSplit, ctx: parallel.Dist, step: int, pad: int,
              device: torch.device) -> list[float]:
    """Forward and backward of one optimiser step's global batch, this rank's micro-batches of it; the
    gradients left on the parameters are the whole batch's (DDP all-reduces them on the last micro-step).
    Returns the global batch's (loss x tokens, tokens, samples, grad evals), summed over the ranks."""
    work = []  # (batch index, planned, task, first position, this micro-batch's samples)
    for bi, planned in enumerate(batches):
        task = tasks[planned.task]
        for a, b in split.chunks(len(planned.indices), ctx.rank):
            work.append((bi, planned, task, a, [train_data[planned.task][i] for i in planned.indices[a:b]]))
    if split.trivial:  # one batch: collated once, its own token count (the single-process step, unchanged)
        collated = {i: w[2].collate(w[4]) for i, w in enumerate(work)}
        counts = [0.0] * len(batches)
        for i, (bi, *_rest) in enumerate(work):
            counts[bi] += float(collated[i].targets.ne(pad).sum())
    else:  # every micro-batch's loss is normalised by its planned batch's tokens over the whole global batch,
        collated = {}  # counted before any of them runs, from the targets alone (no images built)
        counts = [float(tasks[pb.task].target_tokens([train_data[pb.task][i] for i in pb.indices]))
                  for pb in batches]  # every rank counts the whole global batch: no collective needed
    run = ddp if ddp is not None else (lambda fn: fn(model))
    sums = [0.0, 0, 0, 0]
    for idx, (bi, planned, task, first, samples) in enumerate(work):
        final = idx == len(work) - 1
        sync = contextlib.nullcontext() if ddp is None or final else ddp.no_sync()
        if not samples:
            if final and ddp is not None:  # no sample here on the step that all-reduces: join with weight 0
                dummy = task.collate([train_data[planned.task][planned.indices[0]]]).to(device)
                with sync, _autocast(config):
                    zero = run(lambda m, t=task, d=dummy: t.loss(m, d)).float().sum() * 0.0
                zero.backward()
            continue
        cpu_batch = collated.pop(idx) if idx in collated else task.collate(samples)
        try:
            with sync:
                _micro_step(model, run, task, cpu_batch.to(device), config, step, first, len(planned.indices),
                            counts[bi], len(batches), ctx.world if ddp is not None else 1, sums)
        except torch.cuda.OutOfMemoryError:
            raise RobustOFAError(
                f"train: out of GPU memory at a micro-batch of {split.micro_batch} (step {step + 1}, {planned.task}); "
                "lower --micro-batch-size (--batch-size, the recipe, is kept by accumulation) or add "
                "--activation-checkpointing") from None
        sums[1] += int(cpu_batch.targets.ne(pad).sum())
        sums[2] += len(cpu_batch)
    if split.trivial:
        return sums
    sums = _all_sum([float(v) for v in sums], ctx, device)
    if sums[1] != sum(counts):  # the pre-counted tokens must be those the collated batches held
        raise RobustOFAError(f"train: step {step + 1}: {sum(counts):.0f} target tokens were counted before the "
                             f"step but its batches held {sums[1]:.0f} (Task.target_tokens disagrees with collate)")
    return sums


def _micro_step(model: nn.Module, run: Callable, task: Task, batch: Any, config: TrainConfig, step: int,
                first: int, n_global: int, n_tokens: float, n_batches: int, world: int, sums: list) -> None:
    """Forward and backward of one micro-batch (positions ``first``.. of a planned batch of ``n_global``)."""
    robust_scale, adv = 1.0, None
    if config.adv != "none":  # the inner maximisation (eval mode, image gradients only)
        n_attacked = attacked_count(n_global, config.adv_ratio)
        rows = torch.arange(max(0, min(first + len(batch), n_attacked) - first))
        adv = adversarial_batch(model, task, batch, config, step, rows=rows)
        sums[3] += adv.grad_evals
        if config.adv == "trades":  # TRADES' KL is a mean over the global batch's attacked rows
            robust_scale = len(rows) / n_attacked
            sums[3] += 2 * len(adv.rows)  # the KL term's clean and adversarial passes
        elif len(rows):  # PGD-AT / FGSM-RS: the loss on the attacked images
            batch = adv.batch

    def compute(m: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
        robust_term = None
        with _autocast(config):
            if config.adv == "trades" and adv is not None and len(adv.rows):
                robust_term = config.adv_beta * trades_term(m, task, adv, batch)
                if robust_scale != 1.0:
                    robust_term = robust_term * robust_scale
            per_sample = task.loss(m, batch, label_smoothing=config.label_smoothing)
        return per_sample, robust_term

    per_sample, robust_term = run(compute)
    sums[3] += len(batch)
    loss = per_sample.float().sum() / max(n_tokens, 1)
    if robust_term is not None:
        loss = loss + robust_term.float()
    if not torch.isfinite(loss):
        raise RobustOFAError(f"train: loss became {loss.item()} at step {step + 1} (task {task.name}); "
                             "lower the learning rate")
    scaled = loss / n_batches
    if world > 1:  # DDP averages the ranks' gradients; the loss is already a share of the global batch's
        scaled = scaled * world
    scaled.backward()
    sums[0] += float(loss.detach()) * n_tokens


def remove_checkpoint(out_dir: str | Path) -> None:
    """Delete a finished run's checkpoint once its result is saved elsewhere."""
    path = checkpoint_path(out_dir)
    if path.exists():
        path.unlink()

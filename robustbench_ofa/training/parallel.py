"""Data-parallel training: how one optimiser step's global batch is executed by processes and micro-batches.

Why the global batch is the recipe and the split an execution detail: OFA's recipes are global batches
(per-GPU batch x update-freq x GPUs), and a study must reproduce them on 1 GPU or 32. So the samples of a
step, and their order, come from the batch plan (a function of seed and step only); ``StepSplit`` then
cuts that global batch into ``world x accumulation`` micro-batches of ``micro_batch_size`` positions,
and the trainer normalises every micro-batch's loss by the token count of the *whole* global batch. The
summed gradient is then the one-process gradient of the whole batch, whatever the split, up to float
summation order (``tests/test_parallel_training.py`` pins 1e-5 relative per step over 20 steps).

Under torchrun the trainer wraps the model in ``DistributedDataParallel`` (NCCL on ``cuda:LOCAL_RANK``,
gloo on CPU) with only the trainable parameters in its gradient buckets (DDP skips ``requires_grad=False``
parameters), and skips the all-reduce on every micro-step but each process's last (``no_sync``).

BatchNorm: every tuning method freezes it (eval mode), so the split cannot touch it. Where it trains
(pretraining; finetune with ``--hparam freeze_batchnorm=off``) it normalises with each micro-batch's statistics,
as OFA's fairseq training does with its per-GPU batches (no SyncBatchNorm), and the running statistics
are rank 0's (DDP broadcasts its buffers at every forward); such a run depends on the micro-batch, and
its card says so (``execution.batchnorm``).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robustbench_ofa.distributed import SINGLE, Dist, first_mismatch
from robustbench_ofa.errors import RobustOFAError


@dataclass(frozen=True)
class StepSplit:
    """``batch`` samples per optimiser step, over ``world`` processes in micro-batches of ``micro``.

    ``micro=None`` gives each process its whole share at once (no accumulation).
    """

    batch: int
    world: int = 1
    micro: int | None = None

    def __post_init__(self) -> None:
        if self.micro is None:
            if self.batch % self.world:
                raise RobustOFAError(f"--batch-size {self.batch} does not split over {self.world} processes: the "
                                     f"global batch must be a multiple of the world size (or set --micro-batch-size)")
            return
        if self.batch % (self.micro * self.world):
            raise RobustOFAError(
                f"--micro-batch-size {self.micro} x {self.world} process(es) does not divide --batch-size "
                f"{self.batch}: accumulation steps = batch / (micro-batch x world size) must be a whole number")

    @property
    def micro_batch(self) -> int:
        return self.micro if self.micro is not None else self.batch // self.world

    @property
    def accumulation(self) -> int:
        return self.batch // (self.micro_batch * self.world)

    @property
    def trivial(self) -> bool:
        """One process, one micro-batch: the step is the plain single-batch step."""
        return self.world == 1 and self.accumulation == 1

    def chunks(self, n: int, rank: int) -> list[tuple[int, int]]:
        """This rank's micro-batches of a global batch of ``n`` positions, in execution order, as
        ``(start, stop)`` slices; always ``accumulation`` of them, possibly empty.

        Chunk ``k`` holds positions ``[k m, (k + 1) m)``; micro-step ``j`` of rank ``r`` takes chunk
        ``(accumulation - 1 - j) world + r``, so every rank's last micro-step (the one that all-reduces)
        is its fullest: a short final batch of an epoch leaves that step empty only when it has fewer
        samples than there are processes.
        """
        m, out = self.micro_batch, []
        for j in range(self.accumulation):
            k = (self.accumulation - 1 - j) * self.world + rank
            out.append((min(k * m, n), min((k + 1) * m, n)))
        return out

    def facts(self) -> dict[str, Any]:
        """What a card records of the split (execution facts, not recipe)."""
        return {"world_size": self.world, "micro_batch_size": self.micro_batch,
                "accumulation_steps": self.accumulation}


#: The training job of this process: set by ``robust-ofa train`` and ``study run`` under torchrun
#: (``job``). Training is data-parallel only where a command asked for it: a zoo model that one rank
#: builds inside a torchrun evaluation trains alone.
_JOB: contextvars.ContextVar[Dist] = contextvars.ContextVar("robust_ofa_training_job", default=SINGLE)


def current() -> Dist:
    """The job ``train`` runs in: the ``job`` around the call, else the single process."""
    return _JOB.get()


@contextlib.contextmanager
def job(dist: Dist) -> Iterator[Dist]:
    """Train data-parallel over ``dist`` inside the block (``single`` inside it trains alone again)."""
    token = _JOB.set(dist)
    try:
        yield dist
    finally:
        _JOB.reset(token)


def single() -> contextlib.AbstractContextManager[Dist]:
    """Train in this process alone inside the block (a zoo build one rank does for the others)."""
    return job(SINGLE)


def weights_digest(model: nn.Module) -> str:
    """SHA-256 of every parameter and buffer (names, shapes, dtypes, bytes): equal on every rank or the
    ranks would train different models."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def check_same_run(dist: Dist, model: nn.Module, key: dict[str, Any]) -> None:
    """Refuse, on every rank before the first step, a job whose ranks hold other weights or other data or
    settings than rank 0 (DDP would silently overwrite the weights with rank 0's; the data it would not)."""
    if not dist.active:
        return
    import json

    mine = {"weights": weights_digest(model), "data": key["data_sha256"],
            "config": hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()}
    mismatch = first_mismatch(dist, mine)
    if mismatch is not None:
        rank, part, theirs, main = mismatch
        what = {"weights": "weights", "data": "training data", "config": "training settings"}[part]
        raise RobustOFAError(f"train: rank {rank} has other {what} than rank 0 (sha256 {theirs[:12]}... vs "
                             f"{main[:12]}...); every rank must load the same model, data and options")


def rank_seed(seed: int, rank: int) -> int:
    """The torch seed of a rank's dropout and drop-path draws: the run's seed on rank 0 (so one process
    draws what it always drew), an independent stream on every other rank."""
    from robustbench_ofa.seeds import sample_seed

    return seed if rank == 0 else sample_seed(seed, "train-rank", rank)


def batchnorm_trains(model: nn.Module) -> bool:
    """Whether any BatchNorm layer updates its statistics in train mode (pretraining, unfrozen finetune)."""
    was = model.training
    model.train()
    trains = any(m.training for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))
    model.train(was)
    return trains


class StepModule(nn.Module):
    """What DDP wraps: ``forward(fn)`` returns ``fn(model)``. The tasks call the model's parts (encoder,
    decoder) rather than its ``forward``; this runs any such computation through DDP's forward, which is
    where DDP prepares the gradient all-reduce of the backward that follows."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, fn):
        return fn(self.model)


def wrap(model: nn.Module, dist: Dist, device: torch.device) -> nn.Module:
    """The model's ``StepModule`` under ``DistributedDataParallel`` (trainable parameters only).

    ``find_unused_parameters``: a task leaves parts of OFA unused (the decoder's image-code positions,
    the other tasks' paths), and DDP must know which gradients will never arrive; a parameter no rank
    used keeps no gradient, so AdamW skips it exactly as in one process. BatchNorm buffers are broadcast
    from rank 0 only where BatchNorm trains.
    """
    import inspect
    import warnings

    from torch.nn.parallel import DistributedDataParallel

    # Convolutions on channels-last activations (models.resnet) give their weight gradients another
    # stride order than DDP's flat buckets: DDP copies them (a few KB to MB) and warns once per process.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    ids = [device.index if device.index is not None else dist.local_rank] if device.type == "cuda" else None
    sync = batchnorm_trains(model)
    # torch >= 2.13 renames broadcast_buffers (the per-forward broadcast) to forward_sync_buffers
    params = inspect.signature(DistributedDataParallel).parameters
    buffers = {"forward_sync_buffers": sync} if "forward_sync_buffers" in params else {"broadcast_buffers": sync}
    return DistributedDataParallel(StepModule(model), device_ids=ids, find_unused_parameters=True, **buffers)


def execution_facts(split: StepSplit, dist: Dist, model: nn.Module, checkpointing: bool) -> dict[str, Any]:
    """A card's ``execution``: how the run was split and executed (never part of its recipe)."""
    return {**split.facts(), "backend": dist.backend, "activation_checkpointing": bool(checkpointing),
            "batchnorm": "per micro-batch" if batchnorm_trains(model) else "frozen"}

"""The process group of a torchrun job (``torch.distributed``), for sharded evaluation and data-parallel training.

``Dist`` is this process's place in the job and the collectives both use (gathering objects, raising an
error on every rank at once); ``from_env`` makes the group from torchrun's environment.

Evaluation (``evaluation.runner``): every rank keeps a replica of the results store (rank 0: the ``results.sqlite`` file;
the others: an in-memory copy of it, received at start), and every batch of rows is all-gathered and
written to every replica in one transaction. So every rank reads the same cascade, resume and
transfer state from its own replica, the evaluation loop is the single-process loop, and no shared
filesystem is needed. Work is split by whole batches of the single-process run (batch ``k`` goes to rank
``k mod world``): each batch holds exactly the samples it would hold in one process, so every attack,
including torchattacks' batch-seeded ones, computes what one process computes.

Training (``training.parallel``): DistributedDataParallel over the same group.

Without torchrun (``WORLD_SIZE`` unset or 1) :data:`SINGLE` is used and nothing is communicated.
"""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from robustbench_ofa.errors import RobustOFAError

T = TypeVar("T")


@dataclass
class Dist:
    """This process's place in the job, and its time in collectives: waiting for the other ranks to arrive
    (load imbalance: a rank with less work waits for the one with more) apart from moving the objects once
    all have arrived (the cost of gathering itself)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None
    wait_seconds: float = field(default=0.0, compare=False)
    comm_seconds: float = field(default=0.0, compare=False)
    #: Whether this ``Dist`` made the process group (and ``close`` ends it): ``study run`` makes the group
    #: once and each of its steps' commands joins it.
    owner: bool = field(default=True, compare=False)

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def _timed(self, op: Callable[[], None]) -> None:
        """Run the collective ``op`` after a barrier, so that the time until the last rank arrives
        (``wait_seconds``) is not counted as the collective's own cost (``comm_seconds``)."""
        import torch.distributed as dist

        t0 = time.perf_counter()
        # NCCL is told this rank's GPU (otherwise it guesses one and warns).
        dist.barrier(device_ids=[self.local_rank]) if self.backend == "nccl" else dist.barrier()
        t1 = time.perf_counter()
        op()
        self.wait_seconds += t1 - t0
        self.comm_seconds += time.perf_counter() - t1

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (the one object alone without torchrun)."""
        if not self.active:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        self._timed(lambda: dist.all_gather_object(out, obj))
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.active:
            return obj
        import torch.distributed as dist

        box = [obj if self.is_main else None]
        self._timed(lambda: dist.broadcast_object_list(box, src=0))
        return box[0]

    def clock(self) -> tuple[float, float]:
        """(seconds waiting, seconds moving objects) so far: subtract two readings to time one phase."""
        return self.wait_seconds, self.comm_seconds

    def raise_together(self, fn: Callable[[], T], runs: bool) -> T | None:
        """Run ``fn`` where ``runs``; an error on any rank is then raised on every rank (as one line,
        naming the rank for anything but a ``RobustOFAError``), instead of one rank raising while the
        others wait in the next collective."""
        result, error = None, None
        if runs:
            try:
                result = fn()
            except RobustOFAError as exc:
                error = str(exc)
            except Exception as exc:  # noqa: BLE001  (re-raised on every rank below)
                if not self.active:
                    raise
                error = f"rank {self.rank}: {type(exc).__name__}: {exc}"
        errors = [e for e in self.all_gather(error) if e]
        if errors:
            raise RobustOFAError(errors[0])
        return result

    def agree(self, fn: Callable[[], T], main_only: bool = False) -> T:
        """Run ``fn`` on every rank (or on rank 0 only, its result broadcast); errors raised together."""
        result = self.raise_together(fn, self.is_main or not main_only)
        return self.broadcast(result) if main_only else result

    def main_first(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0, then on the other ranks (e.g. the zoo: built once by rank 0 while the
        others wait, then found by them); errors raised together."""
        if not self.active:
            return fn()
        first = self.raise_together(fn, self.is_main)
        later = self.raise_together(fn, not self.is_main)
        return first if self.is_main else later

    def barrier(self) -> None:
        """Wait until every rank arrives (e.g. for the files rank 0 writes)."""
        self.all_gather(None)

    def close(self) -> None:
        if self.active and self.owner:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


SINGLE = Dist()


def from_env(device: str) -> tuple[Dist, str]:
    """The job torchrun describes in the environment (or :data:`SINGLE`), and this rank's device.

    Backend: NCCL for ``cuda`` (each rank on ``cuda:LOCAL_RANK``), gloo otherwise. A device is checked
    before any process group is made, so a machine without CUDA gets one clear line.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.split(":")[0] == "cuda"
    if cuda and world > 1:
        device = f"cuda:{local}"
    check_device(device)
    if world <= 1:
        return SINGLE, device
    import torch.distributed as dist

    backend = "nccl" if cuda else "gloo"
    owner = not dist.is_initialized()
    if owner:
        if cuda:
            import torch

            torch.cuda.set_device(local)
        # Collectives wait while rank 0 builds the embedded zoo or a robust twin (minutes): NCCL's default
        # 10-minute timeout would end such a first run. A rank that dies still ends the job at once (torchrun).
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(hours=2))
    return Dist(rank=rank, world=world, local_rank=local, backend=backend, owner=owner), device


def check_device(device: str) -> None:
    """One line for a device this machine does not have (not a traceback from deep inside torch)."""
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError:
        raise RobustOFAError(f"--device: {device!r} is not a torch device (expected cpu, cuda or cuda:N)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RobustOFAError(f"--device {device}: CUDA is not available on this machine "
                                 f"(torch {torch.__version__}, built with CUDA {torch.version.cuda or 'none'})")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RobustOFAError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                                 f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    elif dev.type not in ("cpu", "mps"):
        raise RobustOFAError(f"--device: {device!r} is not supported (expected cpu, cuda or cuda:N)")


def first_mismatch(dist: Dist, digests: dict[str, str]) -> tuple[int, str, str, str] | None:
    """The first rank, in rank order, whose ``digests`` differ from rank 0's, as (rank, the first differing
    part, its digest, rank 0's; "none" for a part one side lacks); None when every rank agrees. A
    collective: every rank calls it, and every rank gets the same answer."""
    everyone = dist.all_gather(digests)
    for rank, other in enumerate(everyone):
        if other != everyone[0]:
            part = next(k for k in sorted(set(other) | set(everyone[0])) if other.get(k) != everyone[0].get(k))
            return rank, part, str(other.get(part, "none")), str(everyone[0].get(part, "none"))
    return None


def check_same_weights(dist: Dist, name: str, hashes: dict[str, str] | None) -> None:
    """Refuse, on every rank and before any work, a model whose weights differ between ranks."""
    mismatch = first_mismatch(dist, hashes or {})
    if mismatch is not None:
        rank, part, now, then = mismatch
        raise RobustOFAError(f"model '{name}': rank {rank} loaded other weights than rank 0 ({part} sha256 "
                             f"{now[:12]}... vs {then[:12]}...); every rank must load the same files")

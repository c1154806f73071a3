"""Sharded evaluation on ``torch.distributed`` (torchrun): the process group itself lives in
``robustbench_ofa.distributed`` (shared with training); this module adds what the evaluation reports of it."""

from __future__ import annotations

from typing import Any

from robustbench_ofa.distributed import SINGLE, Dist, check_device, check_same_weights, from_env

__all__ = ["SINGLE", "Dist", "check_device", "check_same_weights", "distributed_info", "from_env"]


def distributed_info(dist: Dist, clocks: list[tuple[float, float]], phase_seconds: float) -> dict[str, Any]:
    """``summary.json``'s ``run.distributed``: per rank (in rank order), the evaluation phase's seconds
    waiting for other ranks at collectives and seconds gathering once all had arrived, and the largest of
    each as a share of the phase. Waiting is load imbalance (at most one batch per rank at the end of
    each unit when the batches do not divide evenly); gathering is what sharding itself costs."""
    waits, gathers = [round(w, 3) for w, _ in clocks], [round(c, 3) for _, c in clocks]
    phase = max(phase_seconds, 1e-9)
    return {"world_size": dist.world, "backend": dist.backend, "wait_seconds": waits, "gather_seconds": gathers,
            "wait_share": round(max(waits) / phase, 4), "gather_share": round(max(gathers) / phase, 4)}

"""The arithmetic of the attacks' forward/backward passes (``evaluate --precision``).

Why only the attack: a low-precision forward pass can round a decision the other way, and a prediction
judged in bf16 could make a model look robust because of rounding, not because of the model. So the
attacks (where the time goes) may run in TF32 or bf16, while every clean and adversarial prediction is
judged outside this context, in fp32. The adversarial image is an fp32 tensor throughout: autocast casts
copies of it for the matrix products, and its gradient, update and projection onto the budget are fp32.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def tf32_flags(on: bool) -> Iterator[None]:
    """TF32 for CUDA matmuls and cuDNN convolutions on or off inside the block (restored after)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = on
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@contextmanager
def attack_precision(precision: str, device: str) -> Iterator[None]:
    """``fp32``: nothing changes. ``tf32``: CUDA matmuls and convolutions in TF32 (restored after).
    ``bf16``: ``torch.autocast`` to bfloat16 on the device's type (CPU autocast included, for tests)."""
    if precision == "fp32":
        yield
        return
    if precision == "tf32":
        with tf32_flags(True):
            yield
        return
    with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16):
        yield

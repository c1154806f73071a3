"""The arithmetic of the attacks' forward/backward passes (``evaluate --precision``), and whether they
run through ``torch.compile`` (``evaluate --compile``).

Why only the attack: a low-precision forward pass can round a decision the other way, and a prediction
judged in bf16 could make a model look robust because of rounding, not because of the model. So the
attacks (where the time goes) may run in TF32 or bf16, while every clean and adversarial prediction is
judged outside this context, in fp32. The adversarial image is an fp32 tensor throughout: autocast casts
copies of it for the matrix products, and its gradient, update and projection onto the budget are fp32.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch

from attacks.views import judging_with
from robustbench_ofa.errors import RobustOFAError

#: The ``torch.compile`` backend of ``--compile``: inductor. The tests set ``aot_eager`` through this
#: variable (the same dynamo and AOTAutograd tracing of forward and backward, without a C++ build).
COMPILE_BACKEND_ENV = "ROBUST_OFA_COMPILE_BACKEND"


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


def check_compile() -> None:
    """``--compile`` judges predictions eagerly through ``torch.compiler.set_stance`` (torch >= 2.6): one
    line before any work on an older torch, not an AttributeError inside the run."""
    if not hasattr(torch.compiler, "set_stance"):
        raise RobustOFAError(f"--compile needs torch >= 2.6 (torch.compiler.set_stance), this is torch "
                             f"{torch.__version__}")


def compile_model(model: torch.nn.Module) -> None:
    """``torch.compile`` the encoder's and the decoder's ``forward`` in place (the module tree, parameter
    names and weight hashes stay as they are; the whole model is not compiled because the tasks call
    ``model.encode`` and ``model.decoder``, never ``model.forward``; ``nn.Module.compile`` was measured to
    reach no backend here, torch 2.13). Shapes change with the cascade and decoding, so dynamo
    recompiles a few times and then marks them dynamic."""
    check_compile()
    backend = os.environ.get(COMPILE_BACKEND_ENV) or "inductor"
    for part in (model.encoder, model.decoder):
        if "forward" not in vars(part):  # not compiled yet
            part.forward = torch.compile(part.forward, backend=backend)


def judged_eagerly(compiled: bool):
    """Outside the attacks, compiled modules run eagerly (``set_stance("force_eager")``), so every clean
    and adversarial prediction is computed exactly as without ``--compile``; ``attack_passes`` switches
    compilation back on inside an attack."""
    if not compiled:
        return nullcontext()
    check_compile()
    return torch.compiler.set_stance("force_eager")


@contextmanager
def judging(device: str, compiled: bool) -> Iterator[None]:
    """How every prediction is judged: fp32 (no autocast; TF32 off for CUDA matmuls and cuDNN convolutions,
    which PyTorch leaves on for convolutions by default) and, with ``--compile``, eagerly."""
    with tf32_flags(False), torch.autocast(device_type=torch.device(device).type, enabled=False), \
            judged_eagerly(compiled):
        yield


@contextmanager
def attack_passes(precision: str, device: str, compiled: bool) -> Iterator[None]:
    """The attack's context: its ``precision``, and compiled modules running compiled. When either differs
    from the judge's, the attacks confirm their in-loop "fooled" decisions under ``judging``."""
    factory = None if precision == "fp32" and not compiled else (lambda: judging(device, compiled))
    with attack_precision(precision, device), judging_with(factory):
        if compiled:
            with torch.compiler.set_stance("default"):
                yield
        else:
            yield

"""The arithmetic of the attacks' forward/backward passes (``evaluate --precision``), and whether they
run through ``torch.compile`` (``evaluate --compile``).

Why only the attack: a low-precision forward pass can round a decision the other way, and a prediction
judged in bf16 could make a model look robust because of rounding, not because of the model. So the
attacks (where the time goes) may run in TF32 or bf16, while every clean and adversarial prediction is
judged outside this context, in fp32. The adversarial image is an fp32 tensor throughout: autocast casts
copies of it for the matrix products, and its gradient, update and projection onto the budget are fp32.
"""

from __future__ import annotations

import functools
import logging
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


#: Compiled variants each of the encoder and the decoder may keep (dynamo's default is 8; once reached, a
#: function silently runs eagerly for the rest of the process). Batch sizes shrink with the cascade and text
#: lengths differ per batch: each such size costs one recompile before dynamo marks that dimension dynamic.
RECOMPILE_LIMIT = 32


def compile_model(model: torch.nn.Module) -> None:
    """``torch.compile`` the encoder's and the decoder's ``forward`` in place (the module tree, parameter
    names and weight hashes stay as they are; the whole model is not compiled because the tasks call
    ``model.encode`` and ``model.decoder``, never ``model.forward``; ``nn.Module.compile`` was measured to
    reach no backend here, torch 2.13).

    Only passes with gradients run compiled (the attacks' forward/backward, where the time goes); passes
    under ``no_grad`` (the in-loop decoding of a generated answer, text attacks' queries) run eagerly. Why:
    every grad-mode flip and every length of a growing decoding cache was a recompile, so on the gate
    models' config the decoder reached dynamo's limit of 8 variants within 16 samples and then ran
    eagerly for the rest of the run (measured on CPU with ``aot_eager``).

    A compiler fault must not end a long run: ``--compile`` changes only speed, so a function whose
    compilation fails runs eagerly from then on, and the run reports it (``compile_stats``)."""
    check_compile()
    backend = os.environ.get(COMPILE_BACKEND_ENV) or "inductor"
    _watch_limits()
    _raise_recompile_limit()
    _compile_backward_with_forward()
    if backend == "inductor":
        _avoid_inductor_tiling_fault()
    for part in (model.encoder, model.decoder):
        if "forward" not in vars(part):  # not compiled yet
            compiled = torch.compile(part.forward, backend=backend)
            part.forward = _compiled_with_grad(part.forward, compiled, type(part).__name__)


#: Compilations that failed since the process started, in order, as "function: error"; each such
#: function ran eagerly from then on.
_FAILED: list[str] = []


def _compiled_with_grad(eager, compiled, name: str):
    """Compiled while gradients are on, eager otherwise; eager for good after a compile error."""
    failed = False

    @functools.wraps(eager)
    def forward(*args, **kwargs):
        nonlocal failed
        if failed or not torch.is_grad_enabled():
            return eager(*args, **kwargs)
        try:
            return compiled(*args, **kwargs)
        except _compile_errors() as exc:
            # raised while compiling; the encoder's and decoder's forward are pure (a decoding cache is
            # returned, never updated in place), so the pass runs again eagerly even if a graph break ran
            # part of it
            failed = True
            _FAILED.append(f"{name}: {_describe(exc)}")
            return eager(*args, **kwargs)
    return forward


def _describe(exc: BaseException) -> str:
    """One line: the wrapper's type and the compiler's own error (``BackendCompilerFailed`` says only
    "backend=... raised:" on its first line; inductor's ``InductorError`` wraps the real error too)."""
    inner = getattr(exc, "inner_exception", None) or exc.__cause__
    first = next((line.strip() for line in str(inner or exc).splitlines() if line.strip()), "")
    what = f"{type(inner).__name__}: {first}" if inner is not None else first
    return f"{type(exc).__name__} ({what[:200]})"


def _compile_errors() -> tuple[type[BaseException], ...]:
    """What a failed compilation raises: inductor its own ``InductorError``, other backends dynamo's
    ``BackendCompilerFailed``."""
    from torch._dynamo.exc import BackendCompilerFailed

    try:
        from torch._inductor.exc import InductorError
    except ImportError:  # torch before 2.7
        return (BackendCompilerFailed,)
    return BackendCompilerFailed, InductorError


def _compile_backward_with_forward() -> None:
    """AOTAutograd compiles a backward graph lazily, at the first ``backward``, where a compile error
    would surface inside the attack's gradient call with no eager pass to fall back on; compiled together
    with its forward, the error reaches ``_compiled_with_grad``."""
    import torch._functorch.config as functorch_config

    if hasattr(functorch_config, "force_non_lazy_backward_lowering"):
        functorch_config.force_non_lazy_backward_lowering = True


def _avoid_inductor_tiling_fault() -> None:
    """torch 2.11's inductor (CUDA, an H100) stopped with an ``AssertionError`` in its memory-coalescing
    tiling analysis (``tiling_utils.get_pw_red_splits``) on an encoder graph recompiled with dynamic shapes
    during ``gpu_eval_check``'s bf16 run (pytorch/pytorch#181563 and #197077 report the same assertion).
    The analysis only chooses how kernels are tiled, never what they compute, so it is turned off."""
    import torch._inductor.config as inductor_config

    triton = getattr(inductor_config, "triton", None)
    if hasattr(triton, "coalesce_tiling_analysis"):
        triton.coalesce_tiling_analysis = False


def _limit_name() -> str:
    """Dynamo's per-function recompile limit: ``recompile_limit`` since torch 2.7, ``cache_size_limit`` before."""
    return "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"


def _raise_recompile_limit() -> None:
    """At least ``RECOMPILE_LIMIT`` (a higher limit set by the user stays)."""
    setattr(torch._dynamo.config, _limit_name(), max(getattr(torch._dynamo.config, _limit_name()), RECOMPILE_LIMIT))


class _LimitWatch(logging.Handler):
    """Records dynamo's "hit config.<limit>" warnings (dynamo keeps no counter of them), in order, as
    "function: limit value", so that a run reports the hits that happened during it."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.hits: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("torch._dynamo hit config.") and len(record.args or ()) >= 3:
            limit, value, function = record.args[:3]
            self.hits.append(f"{function}: {limit} {value}")


_WATCH = _LimitWatch()


def _watch_limits() -> None:
    logger = logging.getLogger("torch._dynamo.convert_frame")
    if _WATCH not in logger.handlers:
        logger.addHandler(_WATCH)


def compile_mark() -> tuple[int, int, int]:
    """Where dynamo's counts stand now: ``compile_stats(mark)`` then reports only what came after (one
    process may run several evaluations: ``robust-ofa study``)."""
    from torch._dynamo.utils import counters
    return int(counters["stats"]["unique_graphs"]), len(_WATCH.hits), len(_FAILED)


def compile_stats(mark: tuple[int, int, int] = (0, 0, 0)) -> dict:
    """Graphs compiled since ``mark``, and the functions that reached a recompile limit or failed to
    compile since then (those ran eagerly from then on, so ``--compile`` did not do what it says;
    ``evaluate`` warns)."""
    from torch._dynamo.utils import counters
    return {"graphs": int(counters["stats"]["unique_graphs"]) - mark[0],
            "recompile_limit": int(getattr(torch._dynamo.config, _limit_name())),
            "limit_reached_in": sorted(set(_WATCH.hits[mark[1]:])),
            "failed_in": _FAILED[mark[2]:]}


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

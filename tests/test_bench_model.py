"""Benchmarks (pytest-benchmark): forward+backward w.r.t. the image, OFA-tiny, batch 8, 256 px, CPU.

The SDPA attention path is compared with the plain softmax(QK^T + bias)V path in the same run; the
ratio of their means is the figure to report. Run: ``tox -e bench`` (or ``pytest --benchmark-only``).
"""

from __future__ import annotations

import pytest
import torch

from robustbench_ofa.models import OFAConfig, OFAModel

pytestmark = pytest.mark.benchmark


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = OFAModel(OFAConfig.from_size("tiny")).eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 50000, (8, 20), generator=g)
    ids[:, 0], ids[:, -1] = 0, 2
    images = torch.rand(8, 3, 256, 256, generator=g)
    dec = torch.randint(4, 50000, (8, 6), generator=g)
    dec[:, 0] = 0
    return model, ids, images, dec


def _fwd_bwd(model, ids, images, dec):
    x = (images * 2 - 1).requires_grad_(True)
    logits = model(input_ids=ids, patch_images=x, decoder_input_ids=dec).logits
    torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), dec[:, 1:].flatten()).backward()
    return x.grad


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_bench_forward_backward_wrt_image(benchmark, tiny, impl):
    model, ids, images, dec = tiny
    model.set_attention_impl(impl)
    benchmark.group = "ofa-tiny fwd+bwd wrt image, batch 8, 256px"
    grad = benchmark.pedantic(_fwd_bwd, args=(model, ids, images, dec), rounds=3, warmup_rounds=1)
    assert grad is not None and torch.isfinite(grad).all()

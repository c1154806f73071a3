"""Benchmark (pytest-benchmark): scoring a VQAv2-sized answer set (3,129 candidates) on the embedded
architecture, chunked over one shared encoder pass and one shared decoder prefix (the bos step and the
cross-attention keys/values, once per image), against scoring the candidates one at a time (the issue's
baseline) and against the same chunks with the encoder output copied per candidate (what the shared prefix
saves).

The ratios are printed by ``scripts/bench_ratios.py``. Run: ``tox -e bench``.
"""

from __future__ import annotations

import pytest
import torch

from robustbench_ofa.models import OFAConfig, OFAModel
from robustbench_ofa.models.generation import score_candidates
from robustbench_ofa.tasks.answers import MAX_ANSWERS
from robustbench_ofa.zoo.recipe import EMBEDDED

pytestmark = pytest.mark.benchmark
VOCAB = 700  # the embedded zoo's BPE (600) plus its bins and specials, rounded up


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = OFAModel(OFAConfig(**{**EMBEDDED.model, "vocab_size": VOCAB})).eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, VOCAB, (1, 12), generator=g)
    ids[:, 0], ids[:, -1] = 0, 2
    images = torch.rand(1, 3, EMBEDDED.image_size, EMBEDDED.image_size, generator=g) * 2 - 1
    lengths = torch.randint(1, 4, (MAX_ANSWERS,), generator=g).tolist()
    candidates = [torch.randint(4, VOCAB, (n,), generator=g).tolist() for n in lengths]
    with torch.no_grad():
        enc = model.encode(ids, images)
    return model, enc, candidates


def _chunked(model, enc, candidates):
    with torch.no_grad():
        return score_candidates(model, enc, candidates)


def _encoder_copies(model, enc, candidates):
    """The chunks without the shared prefix: every candidate row gets its own copy of the encoder output,
    so each decoder layer projects the image's keys/values once per candidate."""
    from robustbench_ofa.models.generation import CANDIDATE_CHUNK_ELEMENTS, candidate_batch

    cfg = model.config
    inp, tgt = candidate_batch(candidates, cfg.decoder_start_token_id, cfg.eos_token_id, cfg.pad_token_id)
    chunk = max(1, CANDIDATE_CHUNK_ELEMENTS // (inp.shape[1] * cfg.vocab_size))
    parts = []
    with torch.no_grad():
        for i in range(0, len(candidates), chunk):
            x, t = inp[i:i + chunk], tgt[i:i + chunk]
            logits, _ = model.decoder(x, enc.index_select(torch.zeros(x.shape[0], dtype=torch.long)))
            lp = torch.log_softmax(logits.float(), -1).gather(-1, t.unsqueeze(-1)).squeeze(-1)
            parts.append((lp * t.ne(cfg.pad_token_id)).sum(-1))
    return torch.cat(parts)[None]


def _one_at_a_time(model, enc, candidates):
    with torch.no_grad():
        return torch.cat([score_candidates(model, enc, [c]) for c in candidates], dim=1)


def test_bench_answer_set_chunked(benchmark, setup):
    model, enc, candidates = setup
    benchmark.group = f"score {MAX_ANSWERS} answers, embedded architecture, 1 image"
    scores = benchmark.pedantic(_chunked, args=(model, enc, candidates), rounds=5, warmup_rounds=1)
    assert scores.shape == (1, MAX_ANSWERS) and torch.isfinite(scores).all()


def test_bench_answer_set_one_at_a_time(benchmark, setup):
    model, enc, candidates = setup
    benchmark.group = f"score {MAX_ANSWERS} answers, embedded architecture, 1 image"
    scores = benchmark.pedantic(_one_at_a_time, args=(model, enc, candidates), rounds=3, warmup_rounds=0)
    assert torch.allclose(scores, _chunked(model, enc, candidates), atol=1e-4)


def test_bench_answer_set_encoder_copies(benchmark, setup):
    model, enc, candidates = setup
    benchmark.group = f"score {MAX_ANSWERS} answers, embedded architecture, 1 image"
    scores = benchmark.pedantic(_encoder_copies, args=(model, enc, candidates), rounds=3, warmup_rounds=1)
    assert torch.allclose(scores, _chunked(model, enc, candidates), atol=1e-4)

"""Decoding: greedy/beam agreement, constrained box decoding, answer-set scoring gradients."""

from __future__ import annotations

import pytest
import torch

from robustbench_ofa.models.generation import beam_search, greedy_decode, score_candidates, sequence_nll
from robustbench_ofa.tuning import get_method

#: rerun by CI under the most portable CPU kernels and 1 thread (scripts/ci_portable.py)
pytestmark = pytest.mark.kernels


def test_beam_one_equals_greedy_and_beam_is_at_least_as_likely(model, batch):
    ids, images, _ = batch
    enc = model.encode(ids, images)
    g = greedy_decode(model, enc, max_len=6)
    b1 = beam_search(model, enc, beam=1, max_len=6)
    assert g.tokens == b1.tokens
    b5 = beam_search(model, enc, beam=5, max_len=6, length_penalty=0.0)
    assert all(s5 >= s1 - 1e-4 for s5, s1 in zip(b5.scores.tolist(), b1.scores.tolist()))


def test_box_decoding_yields_exactly_four_bin_tokens(model, batch):
    ids, images, _ = batch
    enc = model.encode(ids, images)
    bins = torch.arange(220, 320)
    for out in (beam_search(model, enc, beam=5, fixed_len=4, allowed_ids=bins),
                greedy_decode(model, enc, fixed_len=4, allowed_ids=bins)):
        assert all(len(t) == 4 and all(220 <= x < 320 for x in t) for t in out.tokens)


def test_candidate_scores_are_sequence_log_likelihoods_and_differentiable(model, batch):
    ids, images, _ = batch
    x = images.clone().requires_grad_(True)
    enc = model.encode(ids, x)
    cands = [[5], [6, 7], [8, 9, 10]]
    scores = score_candidates(model, enc, cands)
    assert scores.shape == (2, 3)
    targets = torch.tensor([[6, 7, 2]])
    nll = sequence_nll(model, model.encode(ids[:1], images[:1]), targets)
    torch.testing.assert_close(scores[0, 1].detach(), -nll[0].detach(), atol=1e-4, rtol=1e-4)
    scores[:, 0].sum().backward()
    assert x.grad.abs().sum() > 0


def _reference_scores(model, enc, cands):
    """Answer-set scores the plain way: the encoder output copied per candidate, every token decoded."""
    from robustbench_ofa.models.generation import candidate_batch

    cfg = model.config
    inp, tgt = candidate_batch(cands, cfg.decoder_start_token_id, cfg.eos_token_id, cfg.pad_token_id)
    b, c = enc.last_hidden_state.shape[0], len(cands)
    logits, _ = model.decoder(inp.repeat(b, 1), enc.index_select(torch.arange(b).repeat_interleave(c)))
    tgt = tgt.repeat(b, 1)
    lp = torch.log_softmax(logits.float(), -1).gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
    return (lp * tgt.ne(cfg.pad_token_id)).sum(-1).view(b, c)


@pytest.mark.parametrize("method", [None, "prompt", "lora", "adapter"])
@pytest.mark.parametrize("chunk", [None, 2])
def test_shared_prefix_scoring_equals_per_candidate_decoding(colour_model, method, chunk):
    """Scoring with one bos step and one cross-attention key/value projection per image (candidates
    grouped per image) gives the plain per-candidate decoder's scores and image gradients: on a model whose
    answers depend on the image, with deep decoder prompts, LoRA on the cross-attention projections,
    adapters, candidates of different lengths and chunks recomputed in backward."""
    import copy

    from conftest import colour_samples, jitter_trainable

    model, task = colour_model
    model = copy.deepcopy(model)
    if method is not None:
        get_method(method).apply(model)
        jitter_trainable(model, std=0.1)
    model.eval()
    batch = task.collate(colour_samples(3, 5))
    g = torch.Generator().manual_seed(0)
    cands = [*task.candidates, *(torch.randint(4, task.tokenizer.vocab_size, (n,), generator=g).tolist()
                                 for n in (1, 3, 2))]
    weights = torch.linspace(-1, 1, 3 * len(cands)).view(3, -1)

    def grad_of(fn):
        x = batch.images.clone().requires_grad_(True)
        scores = fn(task.encode(model, batch.input_ids, x))
        (scores * weights).sum().backward()
        return scores.detach(), x.grad

    ref, ref_g = grad_of(lambda enc: _reference_scores(model, enc, cands))
    got, got_g = grad_of(lambda enc: score_candidates(model, enc, cands, chunk=chunk))
    assert (ref[:, :4].argmax(1) != ref[0, :4].argmax()).any()  # the image decides the answer
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got_g, ref_g, atol=1e-6, rtol=1e-3)
    assert ref_g.abs().sum() > 0


def test_grouped_decoder_refuses_rows_that_do_not_match_the_encoder(model, batch):
    ids, images, _ = batch
    enc = model.encode(ids, images)
    with pytest.raises(ValueError, match="group=3 needs 3 decoder rows per encoder row"):
        model.decoder(torch.zeros(5, 2, dtype=torch.long), enc, group=3)

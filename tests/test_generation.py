"""Decoding: greedy/beam agreement, constrained box decoding, answer-set scoring gradients."""

from __future__ import annotations

import torch

from robustbench_ofa.models.generation import beam_search, greedy_decode, score_candidates, sequence_nll


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

"""Decoding for OFA: KV-cached greedy and beam search, answer-set scoring, box decoding.

The encoder runs once per input; every decoding step feeds one token per hypothesis through the cached
decoder. Answer-set scoring (VE yes/no/maybe, VQA candidates) teacher-forces every candidate in one
batch and stays differentiable, so attacks can use the (B, C) scores as logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from robustbench_ofa.models.modeling import OFAEncoderOutput, OFAModel


@dataclass
class Generated:
    """Decoded token ids (without bos, up to and excluding eos) and their total log-probabilities."""

    tokens: list[list[int]]
    scores: torch.Tensor


def _step_logprobs(model: OFAModel, tokens: torch.Tensor, enc: OFAEncoderOutput, past, allowed: torch.Tensor | None,
                   ban: list[int]) -> tuple[torch.Tensor, tuple]:
    logits, past = model.decoder(tokens, enc, past_key_values=past, use_cache=True)
    lp = F.log_softmax(logits[:, -1].float(), dim=-1)
    if allowed is not None:
        lp = lp.masked_fill(~allowed, float("-inf"))
    if ban:
        lp[:, ban] = float("-inf")
    return lp, past


def _allowed_mask(vocab: int, allowed_ids: torch.Tensor | None, device) -> torch.Tensor | None:
    if allowed_ids is None:
        return None
    mask = torch.zeros(vocab, dtype=torch.bool, device=device)
    mask[allowed_ids.to(device)] = True
    return mask


@torch.no_grad()
def greedy_decode(model: OFAModel, enc: OFAEncoderOutput, max_len: int = 20, min_len: int = 1,
                  allowed_ids: torch.Tensor | None = None, fixed_len: int | None = None) -> Generated:
    """Greedy decoding; ``fixed_len`` decodes exactly that many tokens (no eos), e.g. 4 box bins."""
    cfg = model.config
    bsz = enc.last_hidden_state.shape[0]
    device = enc.last_hidden_state.device
    allowed = _allowed_mask(cfg.vocab_size, allowed_ids, device)
    tokens = torch.full((bsz, 1), cfg.decoder_start_token_id, dtype=torch.long, device=device)
    done = torch.zeros(bsz, dtype=torch.bool, device=device)
    total = torch.zeros(bsz, device=device)
    out: list[list[int]] = [[] for _ in range(bsz)]
    past = None
    steps = fixed_len if fixed_len is not None else max_len
    for step in range(steps):
        ban = [cfg.pad_token_id, cfg.bos_token_id]
        if fixed_len is not None or step < min_len:
            ban.append(cfg.eos_token_id)
        lp, past = _step_logprobs(model, tokens[:, -1:], enc, past, allowed, ban)
        best, nxt = lp.max(dim=-1)
        total = total + torch.where(done, torch.zeros_like(best), best)
        for i in range(bsz):
            if not done[i] and int(nxt[i]) != cfg.eos_token_id:
                out[i].append(int(nxt[i]))
        done = done | nxt.eq(cfg.eos_token_id)
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
        if bool(done.all()):
            break
    return Generated(out, total)


@torch.no_grad()
def beam_search(model: OFAModel, enc: OFAEncoderOutput, beam: int = 5, max_len: int = 20, min_len: int = 1,
                allowed_ids: torch.Tensor | None = None, fixed_len: int | None = None,
                length_penalty: float = 1.0) -> Generated:
    """Beam search with a KV cache; finished hypotheses ranked by score / length ** length_penalty."""
    cfg = model.config
    bsz = enc.last_hidden_state.shape[0]
    device = enc.last_hidden_state.device
    allowed = _allowed_mask(cfg.vocab_size, allowed_ids, device)
    enc_k = enc.index_select(torch.arange(bsz, device=device).repeat_interleave(beam))
    tokens = torch.full((bsz * beam, 1), cfg.decoder_start_token_id, dtype=torch.long, device=device)
    scores = torch.full((bsz, beam), float("-inf"), device=device)
    scores[:, 0] = 0.0
    finished: list[list[tuple[float, float, list[int]]]] = [[] for _ in range(bsz)]
    past = None
    steps = fixed_len if fixed_len is not None else max_len
    for step in range(steps):
        ban = [cfg.pad_token_id, cfg.bos_token_id]
        if fixed_len is not None or step < min_len:
            ban.append(cfg.eos_token_id)
        lp, past = _step_logprobs(model, tokens[:, -1:], enc_k, past, allowed, ban)
        vocab = lp.shape[-1]
        cand = (scores.view(-1, 1) + lp).view(bsz, beam * vocab)
        top_s, top_i = cand.topk(min(2 * beam, cand.shape[1]), dim=-1)
        new_src, new_tok, new_scores = [], [], []
        for b in range(bsz):
            keep_src, keep_tok, keep_s = [], [], []
            for s, idx in zip(top_s[b].tolist(), top_i[b].tolist()):
                src, tok = divmod(idx, vocab)
                if s == float("-inf"):
                    break
                if tok == cfg.eos_token_id:
                    hyp = tokens[b * beam + src, 1:].tolist()
                    finished[b].append((s / max(len(hyp), 1) ** length_penalty, s, hyp))
                    continue
                keep_src.append(b * beam + src)
                keep_tok.append(tok)
                keep_s.append(s)
                if len(keep_src) == beam:
                    break
            while len(keep_src) < beam:  # pad dead beams (never selected again)
                keep_src.append(b * beam)
                keep_tok.append(cfg.pad_token_id)
                keep_s.append(float("-inf"))
            new_src += keep_src
            new_tok += keep_tok
            new_scores.append(keep_s)
        order = torch.tensor(new_src, device=device)
        tokens = torch.cat([tokens.index_select(0, order), torch.tensor(new_tok, device=device)[:, None]], dim=1)
        scores = torch.tensor(new_scores, device=device)
        past = tuple(tuple(t.index_select(0, order) for t in layer) for layer in past)
        if fixed_len is None and all(len(f) >= beam for f in finished):
            break
    results, totals = [], []
    for b in range(bsz):
        pool = list(finished[b])
        for k in range(beam):
            s = float(scores[b, k])
            if s > float("-inf") and (fixed_len is not None or not pool or len(pool) < beam):
                hyp = tokens[b * beam + k, 1:].tolist()
                pool.append((s / max(len(hyp), 1) ** length_penalty, s, hyp))
        best = max(pool, key=lambda x: x[0])
        results.append(best[2])
        totals.append(best[1])
    return Generated(results, torch.tensor(totals))


def candidate_batch(candidates: list[list[int]], bos: int, eos: int, pad: int,
                    device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(decoder inputs, targets) for teacher-forcing each candidate: [bos, c...] -> [c..., eos]."""
    from torch.nn.utils.rnn import pad_sequence

    inp = pad_sequence([torch.tensor([bos, *c], dtype=torch.long) for c in candidates], batch_first=True,
                       padding_value=pad)
    tgt = pad_sequence([torch.tensor([*c, eos], dtype=torch.long) for c in candidates], batch_first=True,
                       padding_value=pad)
    return inp.to(device), tgt.to(device)


#: Upper bound on the logits one decoder call of :func:`score_candidates` produces (batch x candidates x
#: length x vocabulary, float32): 2**26 elements = 256 MB. A 3,129-answer VQA set is scored in chunks of
#: candidates that share the one encoder pass; with gradients, each chunk is recomputed in backward
#: (activation checkpointing), so the attack's gradients stay exact at the memory of one chunk.
CANDIDATE_CHUNK_ELEMENTS = 2 ** 26


def _shared_prefix(model: OFAModel, enc: OFAEncoderOutput) -> tuple[torch.Tensor, tuple]:
    """The part of the decoder every candidate of one image shares, computed once per image.

    Every candidate starts with bos, so the first decoder step (its log-probabilities, and its
    self-attention keys/values) is the same for all of them; the cross-attention keys/values of every layer
    depend only on the image. Returns (log-probabilities (B, V) of the first answer token, the cache).
    """
    bsz = enc.last_hidden_state.shape[0]
    bos = torch.full((bsz, 1), model.config.decoder_start_token_id, dtype=torch.long,
                     device=enc.last_hidden_state.device)
    logits, cache = model.decoder(bos, enc, use_cache=True)
    return F.log_softmax(logits[:, 0].float(), dim=-1), cache


def _score_block(model: OFAModel, enc: OFAEncoderOutput, first: torch.Tensor, cache: tuple, inp: torch.Tensor,
                 tgt: torch.Tensor, normalize: bool) -> torch.Tensor:
    """(B, C) scores of one chunk of candidates, continuing from the shared prefix (bos step + cache).

    Candidate rows run as groups of C per image (``group``): the cached cross-attention keys/values are
    used once per image, not copied per candidate. Right padding never reaches earlier positions (causal).
    """
    bsz, n_cand = first.shape[0], inp.shape[0]
    tgt_x = tgt.repeat(bsz, 1)
    lp = first.repeat_interleave(n_cand, dim=0).gather(-1, tgt_x[:, :1])
    if inp.shape[1] > 1:
        rows = torch.arange(bsz, device=first.device).repeat_interleave(n_cand)
        past = tuple((sk.index_select(0, rows), sv.index_select(0, rows), ck, cv) for sk, sv, ck, cv in cache)
        logits, _ = model.decoder(inp[:, 1:].repeat(bsz, 1), enc, past_key_values=past, group=n_cand)
        rest = F.log_softmax(logits.float(), dim=-1).gather(-1, tgt_x[:, 1:].unsqueeze(-1)).squeeze(-1)
        lp = torch.cat([lp, rest], dim=1)
    valid = tgt_x.ne(model.config.pad_token_id)
    seq = (lp * valid).sum(-1)
    if normalize:
        seq = seq / valid.sum(-1)
    return seq.view(bsz, n_cand)


def score_candidates(model: OFAModel, enc: OFAEncoderOutput, candidates: list[list[int]],
                     normalize: bool = False, chunk: int | None = None) -> torch.Tensor:
    """(B, C) sequence log-likelihoods of every candidate answer (incl. eos) for every input.

    Differentiable with respect to the encoder output (and so the image). ``normalize`` divides by the
    candidate length (+ eos). ``chunk``: candidates per decoder call (default: as many as fit
    ``CANDIDATE_CHUNK_ELEMENTS``). Every chunk reuses one encoder pass and one shared decoder prefix (the
    bos step and each layer's cross-attention keys/values, :func:`_shared_prefix`).
    """
    from torch.utils.checkpoint import checkpoint

    cfg = model.config
    bsz = enc.last_hidden_state.shape[0]
    n_cand = len(candidates)
    inp, tgt = candidate_batch(candidates, cfg.decoder_start_token_id, cfg.eos_token_id, cfg.pad_token_id,
                               enc.last_hidden_state.device)
    first, cache = _shared_prefix(model, enc)
    if chunk is None:
        chunk = max(1, CANDIDATE_CHUNK_ELEMENTS // max(1, bsz * inp.shape[1] * cfg.vocab_size))
    if chunk >= n_cand:
        return _score_block(model, enc, first, cache, inp, tgt, normalize)
    recompute = torch.is_grad_enabled() and enc.last_hidden_state.requires_grad
    parts = []
    for i in range(0, n_cand, chunk):
        args = (model, enc, first, cache, inp[i:i + chunk], tgt[i:i + chunk], normalize)
        parts.append(checkpoint(_score_block, *args, use_reentrant=False) if recompute else _score_block(*args))
    return torch.cat(parts, dim=1)


def sequence_nll(model: OFAModel, enc: OFAEncoderOutput, targets: torch.Tensor,
                 label_smoothing: float = 0.0) -> torch.Tensor:
    """Per-sample summed NLL of teacher-forced ``targets`` (B, T) padded with pad, each ending in eos."""
    cfg = model.config
    inp = torch.cat([torch.full_like(targets[:, :1], cfg.decoder_start_token_id), targets[:, :-1]], dim=1)
    inp = inp.masked_fill(inp.eq(-100), cfg.pad_token_id)
    logits, _ = model.decoder(inp, enc)
    valid = targets.ne(cfg.pad_token_id)
    lp = F.log_softmax(logits.float(), dim=-1)
    nll = -lp.gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    if label_smoothing > 0:
        nll = (1 - label_smoothing) * nll - label_smoothing * lp.mean(-1)
    return (nll * valid).sum(-1)

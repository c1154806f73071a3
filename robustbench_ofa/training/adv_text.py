"""The text half of adversarial training (``--adv-text WORDS``): a cheap worst-of-K typo search.

Why typos and not word substitutions: a typo keeps the word a reader sees ("trinagle" is still a
triangle), so the right answer cannot change, while a substituted word can relabel the sample ("large"
-> "small"). Two guards keep it that way:

* protected words are never edited: on the generated benchmark its attribute, object, relation and
  question vocabulary (``attacks.text.validity.protected_words``, the evaluation's rule), elsewhere none;
* an edit that produces a word the tokenizer knows as one token (a real word: "left" -> "lift") is
  rejected and another drawn, so every edit stays a typo.

The edits are DeepWordBug's four character operations (swap two neighbours, delete, insert, substitute),
on up to ``WORDS`` whitespace words of the question, drawn per sample from a seed of (run seed, step,
uid, candidate). Of ``CANDIDATES`` such texts the one with the highest training loss (forward passes
only, eval mode, no gradients) is kept; the image attack then runs on that text (Co-Attack's order).
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable, Sequence

import torch

from attacks.text.queries import attack_text, source_ids
from attacks.text.validity import norm_word, protected_words
from robustbench_ofa.data.types import Sample
from robustbench_ofa.seeds import sample_seed
from robustbench_ofa.tasks import Task, TaskBatch

#: candidate texts scored per attacked sample (forward passes; the search's whole cost)
CANDIDATES = 4
#: draws of one word's edit before the word is left alone (every draw was a real word)
_TRIES = 8
_LETTERS = re.compile(r"[A-Za-z]")


def _edit(word: str, rng: random.Random) -> str:
    """One character operation inside ``word``'s letters (punctuation around it is kept)."""
    idx = [i for i, c in enumerate(word) if c.isalpha()]
    op = rng.choice(("swap", "delete", "insert", "substitute") if len(idx) >= 2 else ("insert", "substitute"))
    i = rng.choice(idx[:-1] if op == "swap" else idx)
    letter = rng.choice(string.ascii_lowercase)
    if op == "swap":
        j = idx[idx.index(i) + 1]
        return word[:i] + word[j] + word[i + 1:j] + word[i] + word[j + 1:]
    if op == "delete":
        return word[:i] + word[i + 1:]
    if op == "insert":
        return word[:i] + letter + word[i:]
    return word[:i] + letter + word[i + 1:]


def perturb(text: str, words: int, protected: frozenset[str], is_word: Callable[[str], bool],
            rng: random.Random) -> str:
    """``text`` with up to ``words`` unprotected whitespace words given one typo each (none a real word)."""
    tokens = text.split(" ")
    editable = [i for i, t in enumerate(tokens)
                if len(_LETTERS.findall(t)) >= 2 and norm_word(t) not in protected]
    for i in rng.sample(editable, min(words, len(editable))):
        for _ in range(_TRIES):
            new = _edit(tokens[i], rng)
            if new != tokens[i] and not is_word(norm_word(new)):
                tokens[i] = new
                break
    return " ".join(tokens)


def vocabulary_check(tokenizer) -> Callable[[str], bool]:
    """``is_word(w)``: the tokenizer has ``w`` as one token, with or without a leading space (BPE). Kept on
    the tokenizer: building the vocabulary (OFA's: 59k entries) every training step would cost more than
    the typos."""
    cached = getattr(tokenizer, "_robust_ofa_is_word", None)
    if cached is not None:
        return cached
    vocab = tokenizer.bart.get_vocab()

    def is_word(w: str) -> bool:
        return bool(w) and (w in vocab or "\u0120" + w in vocab)

    try:
        tokenizer._robust_ofa_is_word = is_word
    except AttributeError:  # a tokenizer that takes no new attributes: built each time, still correct
        pass
    return is_word


def adversarial_texts(model, task: Task, batch: TaskBatch, rows: torch.Tensor, words: int, seed: int,
                      step: int) -> tuple[list[str], int]:
    """Per row of ``batch`` its text: the highest-loss of ``CANDIDATES`` typo'd texts for ``rows``, the
    original elsewhere. Also the forward passes spent (samples scored). Call with the model in eval mode."""
    texts = [attack_text(task, s) for s in batch.samples]
    is_word = vocabulary_check(task.tokenizer)
    picked = [int(r) for r in rows]
    cands: list[str] = []
    for r in picked:
        s = batch.samples[r]
        protected = protected_words(s, None)
        for k in range(CANDIDATES):
            rng = random.Random(sample_seed(seed, "adv-text", step, s.uid, k))
            cands.append(perturb(texts[r], words, protected, is_word, rng))
    if not cands:
        return texts, 0
    samples: Sequence[Sample] = [batch.samples[r] for r in picked for _ in range(CANDIDATES)]
    device = batch.images.device
    idx = torch.tensor(picked, device=device).repeat_interleave(CANDIDATES)
    cand_batch = TaskBatch(list(samples), source_ids(task, samples, cands).to(device),
                           batch.images.index_select(0, idx), batch.targets.index_select(0, idx))
    with torch.no_grad():
        loss = task.loss(model, cand_batch).float().view(len(picked), CANDIDATES)
    best = loss.argmax(1).tolist()
    for j, r in enumerate(picked):
        texts[r] = cands[j * CANDIDATES + best[j]]
    return texts, len(cands)

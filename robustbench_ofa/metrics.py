"""Task metrics, in plain Python and numpy so they run anywhere and can be checked by hand.

- Grounding: ``box_iou`` and Acc@IoU>=0.5 (``grounding_accuracy``), as OFA scores RefCOCO: continuous
  pixel coordinates, no "+1" on widths.
- Visual entailment: exact match of yes/no/maybe after trimming and lower-casing (SNLI names are mapped
  to OFA's words first).
- VQA: answers are normalised like the official VQA evaluation (see ``normalize_vqa_answer``). The
  default accuracy is the common simple form min(#humans who gave the answer / 3, 1); ``method="official"``
  is the official one, which averages that quantity over the 10 leave-one-annotator-out subsets.
  ``vqa_soft_score`` reads OFA's stored soft scores instead of raw answers. Which rule scores a sample
  (consensus, soft score or exact match: single-answer data is not VQAv2-shaped) is decided in one
  place, ``vqa_answer_metric``; ``vqa_credit`` applies it.
- Captioning: text is lower-cased, punctuation deleted (as OFA strips ``string.punctuation`` from
  captions) and split on whitespace. BLEU-4 is corpus-level (clipped n-gram counts summed over the
  corpus, geometric mean of 1..4-gram precisions, brevity penalty with the closest reference length as in
  coco-caption). CIDEr-D follows coco-caption's ``ciderD_scorer``: tf-idf n-gram vectors (n = 1..4) with
  document frequencies from the reference sets, clipped cosine similarity, Gaussian length penalty
  (sigma = 6, lengths counted in bigrams as that code does), mean over n and references, times 10.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

Box = Sequence[float]

# ---------------------------------------------------------------------------------------------------
# Grounding


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two [x0, y0, x1, y1] boxes; 0 when they do not overlap.

    Degenerate or inverted boxes have zero area, so they score 0 rather than raising: a model's decoded
    box can be anything.
    """
    ax0, ay0, ax1, ay1 = (float(v) for v in a)
    bx0, by0, bx1, by1 = (float(v) for v in b)
    inter_w = min(ax1, bx1) - max(ax0, bx0)
    inter_h = min(ay1, by1) - max(ay0, by0)
    if inter_w <= 0 or inter_h <= 0:
        return 0.0
    inter = inter_w * inter_h
    area_a = max(ax1 - ax0, 0.0) * max(ay1 - ay0, 0.0)
    area_b = max(bx1 - bx0, 0.0) * max(by1 - by0, 0.0)
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def grounding_hit(pred: Box, target: Box, threshold: float = 0.5) -> bool:
    """Whether one predicted box counts as correct (IoU >= threshold)."""
    return box_iou(pred, target) >= threshold


def grounding_accuracy(preds: Sequence[Box], targets: Sequence[Box], threshold: float = 0.5) -> float:
    """Acc@IoU>=threshold: the fraction of predicted boxes overlapping their target enough."""
    _check_lengths(preds, targets)
    return sum(grounding_hit(p, t, threshold) for p, t in zip(preds, targets)) / len(preds)


def _check_lengths(preds: Sequence, targets: Sequence) -> None:
    if len(preds) != len(targets):
        raise ValueError(f"{len(preds)} predictions but {len(targets)} targets")
    if not preds:
        raise ValueError("cannot compute a metric over zero samples")


# ---------------------------------------------------------------------------------------------------
# Visual entailment

_VE_SYNONYMS = {"entailment": "yes", "contradiction": "no", "neutral": "maybe"}


def normalize_ve_label(label: str) -> str:
    """Trim and lower-case a VE label; SNLI names become OFA's yes/no/maybe."""
    word = label.strip().lower()
    return _VE_SYNONYMS.get(word, word)


def ve_correct(pred: str, label: str) -> bool:
    """Whether a VE prediction matches the label exactly (after ``normalize_ve_label``)."""
    return normalize_ve_label(pred) == normalize_ve_label(label)


def ve_accuracy(preds: Sequence[str], labels: Sequence[str]) -> float:
    """Fraction of exact label matches."""
    _check_lengths(preds, labels)
    return sum(ve_correct(p, t) for p, t in zip(preds, labels)) / len(preds)


# ---------------------------------------------------------------------------------------------------
# VQA

#: Number words the VQA evaluation turns into digits.
_NUMBER_WORDS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_ARTICLES = {"a", "an", "the"}
#: The common apostrophe-less contractions the VQA evaluation repairs (a subset of its table).
_CONTRACTIONS = {
    "arent": "aren't",
    "cant": "can't",
    "couldnt": "couldn't",
    "didnt": "didn't",
    "doesnt": "doesn't",
    "dont": "don't",
    "hadnt": "hadn't",
    "hasnt": "hasn't",
    "havent": "haven't",
    "hes": "he's",
    "im": "i'm",
    "isnt": "isn't",
    "ive": "i've",
    "shes": "she's",
    "shouldnt": "shouldn't",
    "thats": "that's",
    "theres": "there's",
    "theyre": "they're",
    "wasnt": "wasn't",
    "werent": "weren't",
    "whats": "what's",
    "wont": "won't",
    "wouldnt": "wouldn't",
    "youre": "you're",
}
#: The official evaluation's punctuation list, one character each (periods are handled separately).
_VQA_PUNCT = ';/[]"{}()=+\\_-><@`,?!'
_DIGIT_COMMA_DIGIT = re.compile(r"(\d)(,)(\d)")
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")


def normalize_vqa_answer(answer: str) -> str:
    """Normalise an answer the way the official VQA evaluation does, minus its long contraction table.

    Steps: whitespace collapsed; each punctuation mark in the official list is deleted when it touches
    a space (or the text has a digit,digit comma), otherwise replaced by a space ("t-shirt" -> "t shirt");
    periods not followed by a digit are deleted ("2.5" stays); lower-cased; number words zero..ten and
    "none" -> digits; articles a/an/the dropped; common contractions missing their apostrophe repaired.
    """
    text = " ".join(answer.replace("\n", " ").replace("\t", " ").split())
    has_digit_comma = _DIGIT_COMMA_DIGIT.search(text) is not None
    out = text
    for mark in _VQA_PUNCT:
        if f"{mark} " in text or f" {mark}" in text or has_digit_comma:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    out = _PERIOD_NOT_BEFORE_DIGIT.sub("", out)
    words = [_NUMBER_WORDS.get(w, w) for w in out.lower().split()]
    words = [_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES]
    return " ".join(words)


def vqa_accuracy(pred: str, answers: Sequence[str], method: str = "min3") -> float:
    """VQA accuracy of one prediction against all human answers (repeats count).

    ``method="min3"`` (default): min(#answers equal to pred / 3, 1).
    ``method="official"``: the official metric, the mean over each answer left out in turn of
    min(#matches among the remaining answers / 3, 1). For 10 answers it differs from min3 only when
    exactly 3 match (0.9 instead of 1.0; 1 and 2 matches give 0.3 and 0.6 instead of 1/3 and 2/3).
    """
    if not answers:
        raise ValueError("VQA accuracy needs at least one reference answer")
    guess = normalize_vqa_answer(pred)
    matches = [normalize_vqa_answer(a) == guess for a in answers]
    if method == "min3":
        return min(sum(matches) / 3.0, 1.0)
    if method == "official":
        total = sum(matches)
        if len(answers) == 1:
            return min(total / 3.0, 1.0)
        return float(np.mean([min((total - m) / 3.0, 1.0) for m in matches]))
    raise ValueError(f"unknown VQA accuracy method '{method}': expected 'min3' or 'official'")


def mean_vqa_accuracy(preds: Sequence[str], answers: Sequence[Sequence[str]], method: str = "min3") -> float:
    """Mean ``vqa_accuracy`` over a data set."""
    _check_lengths(preds, answers)
    return float(np.mean([vqa_accuracy(p, a, method) for p, a in zip(preds, answers)]))


def vqa_soft_score(pred: str, scores: Mapping[str, float]) -> float:
    """OFA's VQA credit: the stored soft score of the predicted answer (0 if absent), after normalisation.

    For samples read from OFA's TSVs, whose ``meta["answer_scores"]`` holds these scores.
    """
    guess = normalize_vqa_answer(pred)
    best = 0.0
    for answer, score in scores.items():
        if normalize_vqa_answer(answer) == guess:
            best = max(best, float(score))
    return best


#: The VQA rules a data set may ask for explicitly (a manifest's ``answer_metric``): "vqa" is the
#: consensus rule min(#matches / 3, 1) over the human answers, "exact" a normalised exact match.
VQA_ANSWER_METRICS: tuple[str, ...] = ("vqa", "exact")
#: Fewest human answers for which the consensus rule applies by default (VQAv2 has ten per question).
VQA_MIN_HUMAN_ANSWERS = 3
#: Credit at which a consensus or soft-scored VQA answer counts as correct (2 of 3 humans, OFA's 0.6).
VQA_CORRECT_AT = 0.5


def vqa_answer_metric(answers: Sequence[str], answer_scores: Mapping[str, float] | None = None,
                      metric: str | None = None) -> str:
    """The rule that scores one VQA sample: ``"vqa"``, ``"exact"`` or ``"soft"``.

    - ``metric`` given (the data says so, e.g. a manifest's ``answer_metric``): that rule.
    - OFA's soft scores given (samples read from OFA's TSVs): ``"soft"``, the stored score of the answer.
    - at least ``VQA_MIN_HUMAN_ANSWERS`` human answers (VQAv2-style): ``"vqa"``, min(#matches / 3, 1).
    - fewer (one ground-truth answer, as in GQA- or CLEVR-style sets): ``"exact"``. min(#matches / 3, 1)
      would cap such a sample at 1/3 and never count it correct.
    """
    if metric is not None:
        if metric not in VQA_ANSWER_METRICS:
            raise ValueError(f"unknown VQA answer metric {metric!r}: expected one of {'/'.join(VQA_ANSWER_METRICS)}")
        return metric
    if answer_scores:
        return "soft"
    return "vqa" if len(answers) >= VQA_MIN_HUMAN_ANSWERS else "exact"


def vqa_credit(pred: str, answers: Sequence[str], answer_scores: Mapping[str, float] | None = None,
               metric: str | None = None) -> tuple[float, bool]:
    """(credit in [0, 1], correct) of one VQA prediction, under ``vqa_answer_metric``'s rule.

    "vqa": min(#answers equal to pred / 3, 1), correct at >= 0.5 (two of three humans); "soft": the
    stored soft score of the predicted answer (OFA's metric), correct at >= 0.5 (a 0.6 or 1.0 answer);
    "exact": 1 when the normalised prediction equals any normalised reference answer, else 0.
    """
    if not answers and not answer_scores:
        raise ValueError("VQA accuracy needs at least one reference answer")
    rule = vqa_answer_metric(answers, answer_scores, metric)
    if rule == "soft":
        credit = vqa_soft_score(pred, answer_scores or {})
    elif rule == "vqa":
        credit = vqa_accuracy(pred, answers)
    else:
        guess = normalize_vqa_answer(pred)
        credit = float(any(normalize_vqa_answer(a) == guess for a in answers))
    return credit, credit >= VQA_CORRECT_AT


# ---------------------------------------------------------------------------------------------------
# Captioning

_PUNCT_TABLE = str.maketrans("", "", string.punctuation)


def tokenize_caption(text: str) -> list[str]:
    """Lower-case, delete ASCII punctuation (OFA's caption cleaning), split on whitespace."""
    return text.lower().translate(_PUNCT_TABLE).split()


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _all_ngrams(tokens: Sequence[str], max_n: int) -> Counter:
    counts: Counter = Counter()
    for n in range(1, max_n + 1):
        counts.update(_ngrams(tokens, n))
    return counts


def _closest_ref_length(cand_len: int, ref_lens: Sequence[int]) -> int:
    """The reference length nearest the candidate's, the shorter on ties (coco-caption's "closest")."""
    return min(ref_lens, key=lambda r: (abs(r - cand_len), r))


def corpus_bleu(candidates: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4) -> float:
    """Corpus-level BLEU-``max_n`` in [0, 1].

    Clipped n-gram matches and candidate n-gram totals are summed over the whole corpus before taking
    precisions; BP = exp(1 - r / c) when the total candidate length c is below the total closest
    reference length r. Any zero precision gives 0 (coco-caption's tiny smoothing constants give ~1e-9).
    """
    _check_lengths(candidates, references)
    matches = [0] * max_n
    totals = [0] * max_n
    cand_total = ref_total = 0
    for cand, refs in zip(candidates, references):
        if not refs:
            raise ValueError("every candidate needs at least one reference caption")
        cand_tokens = tokenize_caption(cand)
        ref_tokens = [tokenize_caption(r) for r in refs]
        cand_total += len(cand_tokens)
        ref_total += _closest_ref_length(len(cand_tokens), [len(r) for r in ref_tokens])
        for n in range(1, max_n + 1):
            cand_counts = _ngrams(cand_tokens, n)
            max_ref: Counter = Counter()
            for tokens in ref_tokens:
                max_ref |= _ngrams(tokens, n)
            matches[n - 1] += sum(min(c, max_ref[g]) for g, c in cand_counts.items())
            totals[n - 1] += max(len(cand_tokens) - n + 1, 0)
    if cand_total == 0 or any(m == 0 for m in matches):
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / max_n
    brevity = 1.0 if cand_total > ref_total else math.exp(1.0 - ref_total / cand_total)
    return brevity * math.exp(log_precision)


@dataclass
class CiderResult:
    """Corpus CIDEr-D (mean of the per-sample scores) and the per-sample scores."""

    score: float
    per_sample: list[float]


class CiderD:
    """CIDEr-D with document frequencies from a fixed reference corpus.

    Build it once from the references of the whole evaluation set, then score captions one at a time
    (``score``), e.g. to judge each adversarial caption. The idf needs a corpus: with a single image
    every n-gram has idf log(1) - log(1) = 0 and every score is 0.
    """

    def __init__(self, references: Sequence[Sequence[str]], n: int = 4, sigma: float = 6.0) -> None:
        if not references:
            raise ValueError("CIDEr-D needs a non-empty reference corpus for its document frequencies")
        self.n = n
        self.sigma = sigma
        self.doc_freq: Counter = Counter()
        for refs in references:
            seen: set = set()
            for ref in refs:
                seen.update(_all_ngrams(tokenize_caption(ref), n))
            self.doc_freq.update(seen)
        self.log_num_docs = math.log(float(len(references)))

    def _vector(self, caption: str) -> tuple[list[dict], list[float], int]:
        """tf-idf vectors per n-gram order, their norms, and the length (number of bigrams)."""
        vec: list[dict] = [{} for _ in range(self.n)]
        norms = [0.0] * self.n
        length = 0
        for gram, tf in _all_ngrams(tokenize_caption(caption), self.n).items():
            order = len(gram) - 1
            weight = tf * (self.log_num_docs - math.log(max(1.0, self.doc_freq[gram])))
            vec[order][gram] = weight
            norms[order] += weight * weight
            if order == 1:
                length += tf
        return vec, [math.sqrt(v) for v in norms], length

    def _similarity(self, hyp: tuple, ref: tuple) -> np.ndarray:
        (vec_h, norm_h, len_h), (vec_r, norm_r, len_r) = hyp, ref
        penalty = math.exp(-((len_h - len_r) ** 2) / (2 * self.sigma**2))
        val = np.zeros(self.n)
        for order in range(self.n):
            for gram, weight in vec_h[order].items():
                ref_weight = vec_r[order].get(gram, 0.0)
                val[order] += min(weight, ref_weight) * ref_weight
            if norm_h[order] != 0 and norm_r[order] != 0:
                val[order] /= norm_h[order] * norm_r[order]
            val[order] *= penalty
        return val

    def score(self, candidate: str, refs: Sequence[str]) -> float:
        """CIDEr-D of one candidate against its references (about 0..10; higher is better)."""
        if not refs:
            raise ValueError("CIDEr-D needs at least one reference caption per candidate")
        hyp = self._vector(candidate)
        total = np.zeros(self.n)
        for ref in refs:
            total += self._similarity(hyp, self._vector(ref))
        return float(np.mean(total) / len(refs) * 10.0)


def cider_d(
    candidates: Sequence[str], references: Sequence[Sequence[str]], n: int = 4, sigma: float = 6.0
) -> CiderResult:
    """Corpus CIDEr-D with idf from ``references`` (the coco-caption convention)."""
    _check_lengths(candidates, references)
    scorer = CiderD(references, n=n, sigma=sigma)
    per_sample = [scorer.score(c, r) for c, r in zip(candidates, references)]
    return CiderResult(score=float(np.mean(per_sample)), per_sample=per_sample)


def cider_d_sample(candidate: str, refs: Sequence[str], corpus: Sequence[Sequence[str]]) -> float:
    """CIDEr-D of one caption, with idf from ``corpus`` (the reference sets of the whole eval set).

    For many captions build a ``CiderD`` once and call ``score``; this helper rebuilds it each call.
    """
    return CiderD(corpus).score(candidate, refs)

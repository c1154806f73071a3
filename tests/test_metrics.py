"""Task metrics against values worked out by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import pytest

from robustbench_ofa.metrics import (
    CiderD,
    _closest_ref_length,
    box_iou,
    cider_d,
    cider_d_sample,
    corpus_bleu,
    grounding_accuracy,
    grounding_hit,
    mean_vqa_accuracy,
    normalize_ve_label,
    normalize_vqa_answer,
    tokenize_caption,
    ve_accuracy,
    vqa_accuracy,
    vqa_soft_score,
)

# --- grounding ---------------------------------------------------------------------------------


def test_box_iou_hand_computed():
    # Intersection [1,2]x[1,2] = 1; union 4 + 4 - 1 = 7.
    assert box_iou((0, 0, 2, 2), (1, 1, 3, 3)) == pytest.approx(1 / 7)
    assert box_iou((0, 0, 2, 2), (0, 0, 2, 2)) == 1.0
    # Contained: 1 / 4.
    assert box_iou((0, 0, 2, 2), (0, 0, 1, 1)) == pytest.approx(0.25)


def test_box_iou_no_overlap_and_degenerate_boxes():
    assert box_iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0
    assert box_iou((0, 0, 1, 1), (1, 0, 2, 1)) == 0.0  # touching edges
    assert box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0
    assert box_iou((5, 5, 1, 1), (0, 0, 6, 6)) == 0.0  # inverted prediction


def test_grounding_accuracy_threshold_is_inclusive():
    # IoU exactly 0.5: (0,0,2,1) vs (0,0,1,1) -> 1 / 2.
    assert grounding_hit((0, 0, 2, 1), (0, 0, 1, 1))
    assert not grounding_hit((0, 0, 2, 2), (1, 1, 3, 3))
    preds = [(0, 0, 2, 1), (0, 0, 2, 2), (10, 10, 20, 20)]
    targets = [(0, 0, 1, 1), (1, 1, 3, 3), (10, 10, 20, 20)]
    assert grounding_accuracy(preds, targets) == pytest.approx(2 / 3)
    assert grounding_accuracy(preds, targets, threshold=0.9) == pytest.approx(1 / 3)


def test_metric_length_checks():
    with pytest.raises(ValueError):
        grounding_accuracy([(0, 0, 1, 1)], [])
    with pytest.raises(ValueError):
        ve_accuracy([], [])


# --- visual entailment -------------------------------------------------------------------------


def test_ve_accuracy():
    assert normalize_ve_label(" Entailment ") == "yes"
    assert ve_accuracy(["yes", " No", "maybe", "yes"], ["entailment", "no", "no", "neutral"]) == 0.5


# --- VQA ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("Two", "2"),
        ("the dog.", "dog"),
        ("A Red Car", "red car"),
        ("t-shirt", "t shirt"),
        ("yes!", "yes"),
        ("1,000", "1000"),
        ("2.5", "2.5"),
        ("none", "0"),
        ("dont know", "don't know"),
        ("  black   and white ", "black and white"),
        ("left ,right", "left right"),
    ],
)
def test_normalize_vqa_answer(raw, normalized):
    assert normalize_vqa_answer(raw) == normalized


def test_vqa_accuracy_min3_default():
    answers = ["2"] * 2 + ["3"] * 8
    assert vqa_accuracy("two", answers) == pytest.approx(2 / 3)
    assert vqa_accuracy("3", answers) == 1.0
    assert vqa_accuracy("cat", answers) == 0.0
    assert vqa_accuracy("3", ["3", "3", "3", "4"]) == 1.0


def test_vqa_accuracy_official_leave_one_out():
    # 1 match among 10: nine subsets see 1 (1/3), one sees 0 -> 9/30 = 0.3.
    assert vqa_accuracy("a", ["a"] + ["b"] * 9, method="official") == pytest.approx(0.3)
    # 2 matches: eight subsets 2/3, two subsets 1/3 -> (16/3 + 2/3) / 10 = 0.6.
    assert vqa_accuracy("a", ["a"] * 2 + ["b"] * 8, method="official") == pytest.approx(0.6)
    # 3 matches: seven subsets 1, three subsets 2/3 -> (7 + 2) / 10 = 0.9 (min3 gives 1.0).
    assert vqa_accuracy("a", ["a"] * 3 + ["b"] * 7, method="official") == pytest.approx(0.9)
    assert vqa_accuracy("a", ["a"] * 3 + ["b"] * 7) == 1.0
    assert vqa_accuracy("a", ["a"] * 4 + ["b"] * 6, method="official") == 1.0
    with pytest.raises(ValueError):
        vqa_accuracy("a", ["a"], method="vote")
    with pytest.raises(ValueError):
        vqa_accuracy("a", [])


def test_mean_vqa_accuracy_and_soft_score():
    assert mean_vqa_accuracy(["yes", "no"], [["yes"] * 3, ["no", "yes"]]) == pytest.approx((1 + 1 / 3) / 2)
    assert vqa_soft_score("Two", {"2": 0.6, "two": 0.3, "3": 1.0}) == 0.6
    assert vqa_soft_score("cat", {"2": 0.6}) == 0.0


# --- captioning: BLEU ----------------------------------------------------------------------------


def test_tokenize_caption():
    assert tokenize_caption("A Man's bike, parked.") == ["a", "mans", "bike", "parked"]


def test_bleu_single_sentence_hand_computed():
    # Candidate 7 tokens, reference 6: precisions 6/7, 5/6, 4/5, 3/4; no brevity penalty.
    # Geometric mean = (6/7 * 5/6 * 4/5 * 3/4) ** (1/4) = (3/7) ** (1/4).
    score = corpus_bleu(["a cat sat on the mat today"], [["A cat sat on the mat."]])
    assert score == pytest.approx((3 / 7) ** 0.25)


def test_bleu_brevity_penalty():
    # All precisions 1, c = 5 < r = 6 -> BP = exp(1 - 6/5).
    assert corpus_bleu(["a cat sat on the"], [["a cat sat on the mat"]]) == pytest.approx(math.exp(-0.2))


def test_bleu_is_corpus_level_not_mean_of_sentences():
    # Sentence 1 matches fully (4/4, 3/3, 2/2, 1/1); sentence 2 "a b c d e" vs "a b c d f" gives
    # 4/5, 3/4, 2/3, 1/2. Corpus: 8/9, 6/7, 4/5, 2/3, c = r = 9.
    score = corpus_bleu(["a b c d", "a b c d e"], [["a b c d"], ["a b c d f"]])
    assert score == pytest.approx((8 / 9 * 6 / 7 * 4 / 5 * 2 / 3) ** 0.25)


def test_bleu_clips_counts_by_max_reference_count():
    # "the the the the" vs refs: unigram clip = max count of "the" in one ref = 2 -> 2/4; no 2-gram
    # "the the" in refs -> 0 -> BLEU 0.
    assert corpus_bleu(["the the the the"], [["the cat the", "the dog"]]) == 0.0
    # Same clipping with max_n=1: p1 = 2/4; closest ref length 3 < c = 4 -> BP 1.
    assert corpus_bleu(["the the the the"], [["the cat the", "the dog"]], max_n=1) == pytest.approx(0.5)


def test_bleu_closest_reference_length_prefers_shorter_on_ties():
    assert _closest_ref_length(5, [3, 7]) == 3
    assert _closest_ref_length(5, [4, 7]) == 4
    # Refs of length 8 and 2 are both 3 away from 5: the shorter one (2) is used, so BP = 1.
    assert corpus_bleu(["a b c d e"], [["a b c d e f g h", "x y"]]) == pytest.approx(1.0)


def test_bleu_zero_and_empty_cases():
    assert corpus_bleu(["completely different words here"], [["a cat sat on the mat"]]) == 0.0
    assert corpus_bleu([""], [["a cat"]]) == 0.0
    with pytest.raises(ValueError):
        corpus_bleu(["a"], [[]])


# --- captioning: CIDEr-D -------------------------------------------------------------------------


def test_cider_identical_two_word_caption():
    # Corpus of 2 images: every n-gram has df 1, so idf = log 2 everywhere. The candidate equals its
    # reference: cosine 1 for 1- and 2-grams, 0 for 3- and 4-grams (none), no length penalty.
    # Score = 10 * mean(1, 1, 0, 0) = 5.
    result = cider_d(["a b", "x"], [["a b"], ["c d"]])
    assert result.per_sample == pytest.approx([5.0, 0.0])
    assert result.score == pytest.approx(2.5)


def test_cider_partial_match_with_length_penalty():
    # Candidate "a b" vs reference "a b c", corpus of 2 images (idf w = log 2 for all n-grams).
    # 1-grams: (w^2 + w^2) / (w*sqrt(2) * w*sqrt(3)) = 2 / sqrt(6).
    # 2-grams: w^2 / (w * w*sqrt(2)) = 1 / sqrt(2).
    # Lengths in bigrams: 1 vs 2 -> penalty exp(-1 / 72).
    expected = 10 * (2 / math.sqrt(6) + 1 / math.sqrt(2)) / 4 * math.exp(-1 / 72)
    scorer = CiderD([["a b c"], ["d e f"]])
    assert scorer.score("a b", ["a b c"]) == pytest.approx(expected)


def test_cider_clips_candidate_counts():
    # "a a" vs "a b": 1-gram term min(2w, w) * w / (2w * w*sqrt(2)) = 1 / (2 sqrt(2)); the bigram
    # "a a" is absent from the reference -> 0. Equal bigram lengths: no penalty.
    # Without clipping the 1-gram term would be 1 / sqrt(2).
    scorer = CiderD([["a b"], ["c d"]])
    assert scorer.score("a a", ["a b"]) == pytest.approx(10 * (1 / (2 * math.sqrt(2))) / 4)


def test_cider_averages_over_references():
    # Cosine with "a b" is (1, 1, 0, 0), with "c d" 0: (10 * 0.5 + 0) / 2 references = 2.5.
    scorer = CiderD([["a b", "c d"], ["e f"]])
    assert scorer.score("a b", ["a b", "c d"]) == pytest.approx(2.5)


def test_cider_uses_caption_tokenisation():
    scorer = CiderD([["a b"], ["c d"]])
    assert scorer.score("A, B.", ["a b"]) == pytest.approx(5.0)


def test_cider_single_image_corpus_is_zero_and_sample_helper():
    assert cider_d(["a b"], [["a b"]]).score == 0.0
    corpus = [["a b c"], ["d e f"]]
    assert cider_d_sample("a b", ["a b c"], corpus) == pytest.approx(CiderD(corpus).score("a b", ["a b c"]))
    with pytest.raises(ValueError):
        CiderD([])
    with pytest.raises(ValueError):
        CiderD(corpus).score("a", [])

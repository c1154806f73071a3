"""The generated benchmark: determinism, split contract, label correctness and balance (fast, CPU)."""

from __future__ import annotations

import collections
import hashlib
import re

import pytest

from robustbench_ofa.data import synthetic as syn
from robustbench_ofa.data.types import VE_LABELS, Sample
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.tasks import task_class

N = 60  # per task and split for the broad checks; label statistics use more
MARGIN = syn.SceneConfig().relation_margin * syn.SceneConfig().image_size  # pixels at defaults


def _hash(s: Sample) -> str:
    return hashlib.sha256(s.image.tobytes()).hexdigest()


def _record(s: Sample) -> tuple:
    return (s.uid, _hash(s), s.text, s.label, s.box, tuple(s.answers), tuple(s.captions))


@pytest.fixture(scope="module")
def data() -> dict[tuple[str, str], list[Sample]]:
    return {(t, sp): syn.generate(t, sp, N) for t in syn.SYNTHETIC_TASKS for sp in syn.SPLITS}


@pytest.fixture(scope="module")
def big() -> dict[tuple[str, str], list[Sample]]:
    """Enough VE/VQA samples for label statistics."""
    return {(t, sp): syn.generate(t, sp, 600) for t in ("ve", "vqa") for sp in ("train", "downstream_train")}


# --- independent re-implementation of the scene semantics, from Sample.meta only -------------------


def _matches(obj: dict, desc: dict) -> bool:
    return all(desc.get(k) is None or desc[k] == obj[k] for k in ("color", "shape", "size"))


def _centre(obj: dict) -> tuple[float, float]:
    x0, y0, x1, y1 = obj["box"]
    return (x0 + x1) / 2, (y0 + y1) / 2


def _sep(a: dict, b: dict, rel: str) -> float:
    (ax, ay), (bx, by) = _centre(a), _centre(b)
    return {"left of": bx - ax, "right of": ax - bx, "above": by - ay, "below": ay - by}[rel]


_PHRASE = re.compile(
    r"(?:(?P<size>small|large) )?(?:(?P<color>" + "|".join(syn.COLOR_NAMES) + r") )?"
    r"(?P<shape>" + "|".join(syn.SHAPES) + r"|object)(?:e?s)?$"
)


def _parse(phrase: str) -> dict:
    """A noun phrase like "large red squares" back into a description."""
    m = _PHRASE.match(phrase)
    assert m, phrase
    d = m.groupdict()
    if d["shape"] == "object":
        d["shape"] = None
    return d


# --- determinism ------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", syn.SYNTHETIC_TASKS)
def test_same_arguments_give_identical_samples(task: str) -> None:
    a = [_record(s) for s in syn.generate(task, "train", 25)]
    b = [_record(s) for s in syn.generate(task, "train", 25)]
    assert a == b
    # sample i does not depend on n
    assert [_record(s) for s in syn.generate(task, "train", 7)] == a[:7]


def test_seeds_change_the_samples() -> None:
    base = {_hash(s) for s in syn.generate("vqa", "train", 20)}
    other_seed = {_hash(s) for s in syn.generate("vqa", "train", 20, seed=1)}
    other_world = {_hash(s) for s in syn.generate("vqa", "train", 20, syn.SceneConfig(seed=3))}
    assert not base & other_seed
    assert not base & other_world


def test_splits_share_no_image(data: dict) -> None:
    seen: dict[str, str] = {}
    for samples in data.values():
        for s in samples:
            h = _hash(s)
            assert h not in seen, f"{s.uid} repeats {seen[h]}"
            seen[h] = s.uid


def test_uids_and_generate_all_interleave() -> None:
    mixed = syn.generate_all("val", 3)
    assert [s.task for s in mixed] == list(syn.SYNTHETIC_TASKS) * 3
    assert mixed[0].uid == "syn-val-grounding-000000"
    assert mixed[-1].uid == "syn-val-caption-000002"
    spec = syn.SyntheticSpec(split="val", n_per_task=3)
    assert [_record(s) for s in spec.generate()] == [_record(s) for s in mixed]


# --- held-out combinations ----------------------------------------------------------------------------


def test_held_out_set_is_a_fifth_to_a_quarter_and_keeps_every_word() -> None:
    combos = set(syn.HELD_OUT_COMBOS)
    total = len(syn.COLOR_NAMES) * len(syn.SHAPES)
    assert 0.2 <= len(combos) / total <= 0.25
    for c in syn.COLOR_NAMES:
        assert sum((c, s) not in combos for s in syn.SHAPES) >= 3
    for s in syn.SHAPES:
        assert sum((c, s) not in combos for c in syn.COLOR_NAMES) >= 3


def _named_pairs(text: str) -> set[tuple[str, str]]:
    """(colour, shape) pairs a text names outright, singular or plural ("red triangles")."""
    singular = {syn.Desc(shape=sh).plural(): sh for sh in syn.SHAPES}
    words = [singular.get(w, w) for w in text.replace("?", "").split()]
    return {(a, b) for a, b in zip(words, words[1:]) if a in syn.COLORS and b in syn.SHAPES}


def test_pretraining_never_shows_or_names_held_out_pairs(data: dict) -> None:
    held = set(syn.HELD_OUT_COMBOS)
    for split in syn.PRETRAIN_SPLITS:
        for task in syn.SYNTHETIC_TASKS:
            for s in data[(task, split)]:
                assert not any((o["color"], o["shape"]) in held for o in s.meta["scene"]), s.uid
                assert not any(tuple(c) in held for c in s.meta["combos"]), s.uid
                texts = [s.text, *s.captions]
                assert not any(_named_pairs(t) & held for t in texts), (s.uid, texts)
                assert not s.meta["held_out"]


def test_every_downstream_sample_is_about_a_held_out_pair(data: dict) -> None:
    held = set(syn.HELD_OUT_COMBOS)
    for split in syn.DOWNSTREAM_SPLITS:
        for task in syn.SYNTHETIC_TASKS:
            for s in data[(task, split)]:
                assert any((o["color"], o["shape"]) in held for o in s.meta["scene"]), s.uid
                assert s.meta["held_out"] and any(tuple(c) in held for c in s.meta["combos"]), s.uid
                refs = {(s.meta["scene"][r]["color"], s.meta["scene"][r]["shape"]) for r in s.meta["refs"]}
                assert refs & held or _named_pairs(s.text) & held, (s.uid, s.text)


# --- grounding ----------------------------------------------------------------------------------------


def test_grounding_expressions_pick_exactly_the_target(data: dict) -> None:
    kinds = collections.Counter()
    for split in syn.SPLITS:
        for s in data[("grounding", split)]:
            scene, expr, t = s.meta["scene"], s.meta["expr"], s.meta["target"]
            kinds[s.meta["kind"]] += 1
            assert s.box == tuple(scene[t]["box"])
            x0, y0, x1, y1 = s.box
            assert 0 <= x0 < x1 <= s.image.width and 0 <= y0 < y1 <= s.image.height
            head = s.text.removeprefix("the ")
            if expr["relation"]:
                head = head.split(f" {expr['relation']} the ")[0]
            desc = _parse(head)
            assert desc == expr["desc"], (s.text, expr)
            if expr["relation"] is None:
                hits = [i for i, o in enumerate(scene) if _matches(o, desc)]
                assert hits == [t], s.text
                continue
            j, rel = expr["landmark"], expr["relation"]
            assert s.text.endswith(f" {rel} the {syn.Desc(**expr['landmark_desc']).bare()}")
            assert [i for i, o in enumerate(scene) if _matches(o, expr["landmark_desc"])] == [j]
            assert _sep(scene[t], scene[j], rel) >= MARGIN
            others = [i for i, o in enumerate(scene) if i not in (t, j) and _matches(o, desc)]
            assert all(_sep(scene[i], scene[j], rel) <= 0 for i in others), s.text
    assert kinds["relational"] > 0.25 * sum(kinds.values())


# --- visual entailment ------------------------------------------------------------------------------


def test_ve_labels_are_balanced_and_majority_guessing_is_weak(big: dict) -> None:
    for split in ("train", "downstream_train"):
        counts = collections.Counter(s.label for s in big[("ve", split)])
        assert set(counts) == set(VE_LABELS)
        shares = [counts[label] / 600 for label in VE_LABELS]
        assert min(shares) >= 0.25 and max(shares) <= 0.40, counts


def test_ve_existence_and_count_labels_match_the_scene(data: dict) -> None:
    checked = 0
    for split in syn.SPLITS:
        for s in data[("ve", split)]:
            scene, kind = s.meta["scene"], s.meta["kind"]
            if kind == "exists":
                d = _parse(s.text.removeprefix("there is ").removeprefix("an ").removeprefix("a "))
                assert s.label == ("yes" if any(_matches(o, d) for o in scene) else "no"), s.text
            elif kind == "count":
                m = re.fullmatch(r"there (?:is|are) (no|one|two|three|four|five) (.+)", s.text)
                assert m, s.text
                claimed = {"no": 0, **{w: i for i, w in enumerate(syn.NUMBER_WORDS)}}[m.group(1)]
                actual = sum(_matches(o, _parse(m.group(2))) for o in scene)
                assert s.label == ("yes" if claimed == actual else "no"), s.text
            elif kind in ("undecidable", "depth"):
                assert s.label == "maybe"
            else:
                continue
            checked += 1
    assert checked > 100


# --- VQA ----------------------------------------------------------------------------------------------


def test_vqa_answers_are_closed_and_spread(big: dict, data: dict) -> None:
    assert len(set(syn.VQA_ANSWERS)) == len(syn.VQA_ANSWERS)
    for samples in [*data.values(), *big.values()]:
        for s in samples:
            if s.task == "vqa":
                assert s.label in syn.VQA_ANSWERS and set(s.answers) == {s.label}
                assert s.text.endswith("?")
    for split in ("train", "downstream_train"):
        counts = collections.Counter(s.label for s in big[("vqa", split)])
        assert counts.most_common(1)[0][1] / 600 <= 0.25, counts
        assert len(counts) >= 15


def test_vqa_count_colour_and_existence_answers_match_the_scene(data: dict) -> None:
    checked = 0
    for split in syn.SPLITS:
        for s in data[("vqa", split)]:
            scene, kind = s.meta["scene"], s.meta["kind"]
            if kind == "count":
                d = _parse(re.fullmatch(r"how many (.+) are there\?", s.text).group(1))
                assert s.label == str(sum(_matches(o, d) for o in scene)), s.text
            elif kind == "exists":
                d = _parse(re.fullmatch(r"is there an? (.+)\?", s.text).group(1))
                assert s.label == ("yes" if any(_matches(o, d) for o in scene) else "no"), s.text
            elif kind in ("color", "shape", "size"):
                d = _parse(re.fullmatch(rf"what {kind} is the (.+)\?", s.text).group(1))
                hits = [o for o in scene if _matches(o, d)]
                assert len(hits) == 1 and hits[0][kind] == s.label, s.text
            else:
                continue
            checked += 1
    assert checked > 100


# --- captions -----------------------------------------------------------------------------------------


def test_captions_describe_every_object(data: dict) -> None:
    for split in syn.SPLITS:
        for s in data[("caption", split)]:
            assert len(s.captions) == 3 and all(c.strip() for c in s.captions)
            assert task_class(s.task).reference_text(s) == s.captions[0]
            for o in s.meta["scene"]:
                assert f"{o['size']} {o['color']} {o['shape']}" in s.captions[0]


# --- vocabulary ---------------------------------------------------------------------------------------


def test_corpus_covers_every_emitted_word(data: dict, big: dict) -> None:
    vocab = {w for t in syn.corpus_texts() for w in syn.words_of(t)}
    for samples in [*data.values(), *big.values()]:
        for s in samples:
            for t in (s.text, s.label or "", *s.answers, *s.captions):
                missing = set(syn.words_of(t)) - vocab
                assert not missing, (t, missing)


# --- configuration and arguments ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"image_size": 90}, "image_size"),
        ({"image_size": 16}, "image_size"),
        ({"image_size": "96"}, "image_size"),
        ({"min_objects": 0}, "min_objects"),
        ({"min_objects": 3, "max_objects": 2}, "max_objects"),
        ({"max_objects": 9}, "max_objects"),
        ({"large_size": (0.2, 0.3)}, "large_size"),
        ({"small_size": (0.3, 0.2)}, "small_size"),
        ({"noise_strength": 2.0}, "noise_strength"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_config_raises_one_line_error_naming_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(RobustOFAError) as err:
        syn.SceneConfig(**kwargs)
    msg = str(err.value)
    assert f"SceneConfig.{field}" in msg and "\n" not in msg


@pytest.mark.parametrize(
    ("args", "word"),
    [(("nope", "train", 1), "task"), (("vqa", "dev", 1), "split"), (("vqa", "train", -1), "n")],
)
def test_bad_generate_arguments_raise(args: tuple, word: str) -> None:
    with pytest.raises(RobustOFAError, match=word):
        syn.generate(*args)


@pytest.mark.parametrize("size", [32, 64, 160])
def test_other_image_sizes_render_in_bounds(size: int) -> None:
    cfg = syn.SceneConfig(image_size=size, noise_strength=0.0 if size == 32 else 1.0)
    for s in syn.generate("grounding", "downstream_test", 10, cfg):
        assert s.image.size == (size, size) and s.image.mode == "RGB"
        assert 0 <= s.box[0] < s.box[2] <= size and 0 <= s.box[1] < s.box[3] <= size

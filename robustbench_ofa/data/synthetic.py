"""A generated, download-free image+text benchmark in OFA's four task formats.

Why it exists: the suite must pretrain a small OFA on CPU, tune variants of it and attack them without
any data set download. Scenes of coloured shapes on a textured background give all four tasks
(grounding, visual entailment, VQA, captioning) with exact ground truth, in milliseconds per sample.

Design points that matter to users of the data:

* Everything is a pure function of ``(config.seed, seed, split, task, index)``: each sample draws from
  its own ``numpy`` generator, so the same arguments give bit-identical images and texts, a sample does
  not depend on how many others were asked for, and different splits never share a random stream.
* Scenes are built to need vision: objects often share a colour or a shape with another object, so
  the text must be bound to the right object; negatives are mostly "one attribute off" from something
  in the picture; yes/no labels are chosen before the scene question is built so each template is
  about as often true as false.
* A fixed set of (colour, shape) combinations, :data:`HELD_OUT_COMBOS`, never appears in the
  pretraining splits (``train``/``val``/``test``) -- neither drawn nor named. Every sample of the
  ``downstream_*`` splits is about at least one of them, which gives the tuning experiments a
  compositional-generalisation target that pretraining has not seen.
* ``text`` is the raw expression / hypothesis / question (empty for captioning); OFA's instruction
  template is added by the model code. VQA questions end with ``?`` as in VQA v2.
* Blind baselines: answering the majority label scores about 1/3 on VE and 1/7 on VQA. A text-only
  model does better (about 0.63 VE, 0.37 VQA on pretraining splits; more on downstream ones, where
  naming a held-out pair narrows its other attribute): "maybe" is partly readable from undecidable
  predicates such as "is wooden", as in SNLI-VE. Report image-free baselines next to model scores.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

import numpy as np
from PIL import Image, ImageDraw

from robustbench_ofa.data.types import VE_LABELS, Sample
from robustbench_ofa.errors import RobustOFAError

# ---------------------------------------------------------------------------------------------------
# Vocabulary of the generated world
# ---------------------------------------------------------------------------------------------------

#: Object colours and their nominal RGB (spread out in hue and brightness so they stay distinct at
#: 96 px after colour jitter and sensor noise).
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (40, 175, 60),
    "blue": (45, 85, 235),
    "yellow": (245, 225, 40),
    "purple": (150, 55, 200),
    "orange": (250, 135, 15),
    "white": (248, 248, 248),
}
COLOR_NAMES: tuple[str, ...] = tuple(COLORS)
SHAPES: tuple[str, ...] = ("square", "circle", "triangle", "cross", "diamond")
SIZES: tuple[str, ...] = ("small", "large")
#: Spatial relations, judged on object centres with a margin (``SceneConfig.relation_margin``).
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
#: Largest object count a scene may hold; it bounds the count answers.
MAX_OBJECTS = 5
NUMBER_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five")
COUNT_ANSWERS: tuple[str, ...] = tuple(str(i) for i in range(MAX_OBJECTS + 1))

#: Predicates no picture can decide: they produce the "maybe" entailment label.
UNDECIDABLE_ADJECTIVES: tuple[str, ...] = (
    "wooden",
    "heavy",
    "metallic",
    "hot",
    "cold",
    "wet",
    "soft",
    "fragile",
    "expensive",
    "old",
    "sticky",
    "magnetic",
)
UNDECIDABLE_MATERIALS: tuple[str, ...] = ("wood", "glass", "metal", "paper", "plastic", "stone")
UNDECIDABLE_EVENTS: tuple[str, ...] = ("was drawn first", "was drawn last")
#: Depth relations: objects never overlap, so which one is in front cannot be seen.
DEPTH_RELATIONS: tuple[str, ...] = ("behind", "in front of")

#: (colour, shape) combinations kept out of pretraining (8 of 35, about 23%). Hand-picked so every
#: colour and every shape still appears in at least three pretraining combinations, i.e. each word is
#: learnt in pretraining and only the pairing is new.
HELD_OUT_COMBOS: tuple[tuple[str, str], ...] = (
    ("red", "triangle"),
    ("green", "circle"),
    ("blue", "cross"),
    ("yellow", "square"),
    ("purple", "diamond"),
    ("orange", "triangle"),
    ("white", "circle"),
    ("yellow", "diamond"),
)
_HELD_OUT = frozenset(HELD_OUT_COMBOS)

#: The closed VQA answer set (the answer-set logits use this order).
VQA_ANSWERS: list[str] = ["yes", "no", *COLOR_NAMES, *SHAPES, *COUNT_ANSWERS, *SIZES]

PRETRAIN_SPLITS: tuple[str, ...] = ("train", "val", "test")
DOWNSTREAM_SPLITS: tuple[str, ...] = ("downstream_train", "downstream_val", "downstream_test")
SPLITS: tuple[str, ...] = PRETRAIN_SPLITS + DOWNSTREAM_SPLITS

_T = TypeVar("_T")
#: Seed of the shared noise fields every image crops its texture from (see ``_texture_bank``).
_TEXTURE_SEED = 20240611


# ---------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SceneConfig:
    """How scenes look. Sizes are fractions of ``image_size`` so one config works at any resolution.

    The defaults target a 96 px image seen by a stride-16 backbone (a 6x6 patch grid): small objects
    cover about one patch, large ones about two by two, with a gap between the two size ranges so
    "small"/"large" is decidable from the picture.
    """

    image_size: int = 96
    min_objects: int = 2
    max_objects: int = 4
    #: Tiny specks and strokes drawn under the objects; too small to be objects, but not flat noise.
    max_clutter: int = 6
    small_size: tuple[float, float] = (0.16, 0.22)
    large_size: tuple[float, float] = (0.30, 0.38)
    #: 0 gives a flat background and clean colours; 1 a strong texture and sensor noise.
    noise_strength: float = 0.5
    #: Per-channel uniform jitter of object colours, in 0..255 units.
    color_jitter: int = 12
    #: Chance that a new object copies the colour (and, separately, the shape) of an earlier one;
    #: shared attributes force the text to be bound to the right object.
    share_prob: float = 0.4
    #: Minimal centre offset, as a fraction of image size, for "left of"/"above"/... to hold.
    relation_margin: float = 0.08
    #: Names the generated world; combined with ``generate``'s ``seed`` for every sample.
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("small_size", "large_size"):  # JSON (recipes, cards) gives lists
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        _validate_config(self)


def _fail(field_name: str, expected: str, value: object) -> RobustOFAError:
    return RobustOFAError(f"SceneConfig.{field_name} must be {expected}, got {value!r}")


def _check_range(name: str, value: object) -> None:
    """Size ranges must be increasing fractions small enough for several objects to fit."""
    ok = (
        isinstance(value, tuple)
        and len(value) == 2
        and all(isinstance(v, (int, float)) for v in value)
        and 0.05 <= value[0] <= value[1] <= 0.45
    )
    if not ok:
        raise _fail(name, "a pair (lo, hi) with 0.05 <= lo <= hi <= 0.45", value)


def _validate_config(c: SceneConfig) -> None:
    """Reject configs that would silently produce broken data (unplaceable objects, odd patch grids)."""
    if not isinstance(c.image_size, int) or isinstance(c.image_size, bool):
        raise _fail("image_size", "an int", c.image_size)
    if c.image_size < 32 or c.image_size % 16:
        raise _fail("image_size", "a multiple of 16 and >= 32", c.image_size)
    if not isinstance(c.min_objects, int) or not 1 <= c.min_objects <= MAX_OBJECTS:
        raise _fail("min_objects", f"an int in 1..{MAX_OBJECTS}", c.min_objects)
    if not isinstance(c.max_objects, int) or not c.min_objects <= c.max_objects <= MAX_OBJECTS:
        raise _fail("max_objects", f"an int in min_objects..{MAX_OBJECTS}", c.max_objects)
    if not isinstance(c.max_clutter, int) or c.max_clutter < 0:
        raise _fail("max_clutter", "an int >= 0", c.max_clutter)
    _check_range("small_size", c.small_size)
    _check_range("large_size", c.large_size)
    if c.small_size[1] >= c.large_size[0]:
        raise _fail("large_size", "entirely above small_size so sizes are distinguishable", c.large_size)
    if not isinstance(c.noise_strength, (int, float)) or not 0.0 <= c.noise_strength <= 1.0:
        raise _fail("noise_strength", "a number in [0, 1]", c.noise_strength)
    if not isinstance(c.color_jitter, int) or not 0 <= c.color_jitter <= 40:
        raise _fail("color_jitter", "an int in 0..40", c.color_jitter)
    if not isinstance(c.share_prob, (int, float)) or not 0.0 <= c.share_prob <= 1.0:
        raise _fail("share_prob", "a number in [0, 1]", c.share_prob)
    if not isinstance(c.relation_margin, (int, float)) or not 0.0 < c.relation_margin <= 0.3:
        raise _fail("relation_margin", "a number in (0, 0.3]", c.relation_margin)
    if not isinstance(c.seed, int) or c.seed < 0:
        raise _fail("seed", "an int >= 0", c.seed)


# ---------------------------------------------------------------------------------------------------
# Scene model
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SceneObject:
    """One drawn object; ``box`` is (x0, y0, x1, y1) in pixels, x1/y1 exclusive."""

    shape: str
    color: str
    size: str
    box: tuple[float, float, float, float]

    @property
    def cx(self) -> float:
        return (self.box[0] + self.box[2]) / 2

    @property
    def cy(self) -> float:
        return (self.box[1] + self.box[3]) / 2

    @property
    def combo(self) -> tuple[str, str]:
        return (self.color, self.shape)

    def to_meta(self) -> dict:
        """A JSON-friendly record, so tests and analyses can re-check labels from ``Sample.meta``."""
        return {"shape": self.shape, "color": self.color, "size": self.size, "box": list(self.box)}


def relation_separation(a: SceneObject, b: SceneObject, relation: str) -> float:
    """Signed centre offset in pixels: positive when ``a`` is ``relation`` ``b`` (e.g. left of)."""
    if relation == "left of":
        return b.cx - a.cx
    if relation == "right of":
        return a.cx - b.cx
    if relation == "above":
        return b.cy - a.cy
    if relation == "below":
        return a.cy - b.cy
    raise ValueError(f"unknown relation {relation!r}")


class Desc(NamedTuple):
    """A description of objects by any of colour, shape and size; ``None`` fields match anything."""

    color: str | None = None
    shape: str | None = None
    size: str | None = None

    def matches(self, o: SceneObject) -> bool:
        return (
            (self.color is None or self.color == o.color)
            and (self.shape is None or self.shape == o.shape)
            and (self.size is None or self.size == o.size)
        )

    @property
    def combo(self) -> tuple[str, str] | None:
        """The (colour, shape) pair the text names, if it names both."""
        if self.color is None or self.shape is None:
            return None
        return (self.color, self.shape)

    def bare(self) -> str:
        """Singular noun phrase without article: "large red square", "red object"."""
        words = [w for w in (self.size, self.color) if w]
        return " ".join([*words, self.shape or "object"])

    def plural(self) -> str:
        words = [w for w in (self.size, self.color) if w]
        return " ".join([*words, _plural_noun(self.shape or "object")])

    def definite(self) -> str:
        return f"the {self.bare()}"

    def indefinite(self) -> str:
        return _with_article(self.bare())


def _plural_noun(noun: str) -> str:
    return noun + ("es" if noun.endswith(("s", "x")) else "s")


def _with_article(phrase: str) -> str:
    """English a/an: the generated vocabulary has no exceptions to the vowel-letter rule."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _join(phrases: Sequence[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


# ---------------------------------------------------------------------------------------------------
# Text templates (shared by the builders and corpus_texts, so the tokenizer corpus cannot drift)
# ---------------------------------------------------------------------------------------------------


def _t_relational_expr(target: Desc, relation: str, landmark: Desc) -> str:
    return f"{target.definite()} {relation} {landmark.definite()}"


def _t_exists(d: Desc) -> str:
    return f"there is {d.indefinite()}"


def _t_attr(subject: Desc, attribute: str, value: str) -> str:
    if attribute == "shape":
        return f"{subject.definite()} is {_with_article(value)}"
    return f"{subject.definite()} is {value}"


def _t_count(d: Desc, n: int) -> str:
    if n == 0:
        return f"there are no {d.plural()}"
    if n == 1:
        return f"there is one {d.bare()}"
    return f"there are {NUMBER_WORDS[n]} {d.plural()}"


def _t_relation(a: Desc, relation: str, b: Desc) -> str:
    return f"{a.definite()} is {relation} {b.definite()}"


def _t_undecidable(subject: Desc, predicate: tuple[str, str]) -> str:
    kind, word = predicate
    if kind == "adj":
        return f"{subject.definite()} is {word}"
    if kind == "material":
        return f"{subject.definite()} is made of {word}"
    return f"{subject.definite()} {word}"


def _t_undecidable_exists(d: Desc, predicate: tuple[str, str]) -> str:
    kind, word = predicate
    if kind == "adj":
        return f"there is {_with_article(word + ' ' + d.bare())}"
    return f"there is {d.indefinite()} made of {word}"


def _t_q_color(subject: str) -> str:
    return f"what color is {subject}?"


def _t_q_shape(subject: str) -> str:
    return f"what shape is {subject}?"


def _t_q_size(subject: str) -> str:
    return f"what size is {subject}?"


def _t_q_count(d: Desc) -> str:
    return f"how many {d.plural()} are there?"


def _t_q_exists(d: Desc) -> str:
    return f"is there {d.indefinite()}?"


def _t_q_relation(a: Desc, relation: str, b: Desc) -> str:
    return f"is {a.definite()} {relation} {b.definite()}?"


def _t_q_what_rel(relation: str, landmark: Desc) -> str:
    return f"what is {relation} {landmark.definite()}?"


def _t_q_color_rel(relation: str, landmark: Desc) -> str:
    return f"what color is the object {relation} {landmark.definite()}?"


_UNDECIDABLE_PREDICATES: tuple[tuple[str, str], ...] = (
    *(("adj", a) for a in UNDECIDABLE_ADJECTIVES),
    *(("material", m) for m in UNDECIDABLE_MATERIALS),
    *(("event", e) for e in UNDECIDABLE_EVENTS),
)


# ---------------------------------------------------------------------------------------------------
# Sampling and rendering
# ---------------------------------------------------------------------------------------------------


def _randint(rng: np.random.Generator, lo: int, hi: int) -> int:
    """Uniform int in [lo, hi). Scalar ``rng.random()`` is ~4x cheaper than ``rng.integers``, and a
    sample makes dozens of such draws."""
    return lo + int(rng.random() * (hi - lo))


def _uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * rng.random()


def _pick(rng: np.random.Generator, seq: Sequence[_T]) -> _T:
    return seq[_randint(rng, 0, len(seq))]


def _pick_weighted(rng: np.random.Generator, weights: Sequence[float]) -> int:
    """Index drawn with probability proportional to its weight."""
    r = rng.random() * sum(weights)
    for i, w in enumerate(weights):
        r -= w
        if r < 0:
            return i
    return len(weights) - 1


def _sample_combo(
    rng: np.random.Generator, placed: list[SceneObject], downstream: bool, force_held_out: bool, share: float
) -> tuple[str, str]:
    """Draw a (colour, shape), often reusing attributes already in the scene so binding matters."""
    if force_held_out:
        return _pick(rng, HELD_OUT_COMBOS)
    while True:
        color = _pick(rng, placed).color if placed and rng.random() < share else _pick(rng, COLOR_NAMES)
        shape = _pick(rng, placed).shape if placed and rng.random() < share else _pick(rng, SHAPES)
        if downstream or (color, shape) not in _HELD_OUT:
            return color, shape


def _boxes_clash(a: Sequence[float], b: Sequence[float], gap: float) -> bool:
    return a[0] < b[2] + gap and b[0] < a[2] + gap and a[1] < b[3] + gap and b[1] < a[3] + gap


def _place(
    rng: np.random.Generator, config: SceneConfig, size: str, placed: list[SceneObject], tries: int = 30
) -> tuple[float, float, float, float] | None:
    """Rejection-sample a square box that keeps a small gap to every placed box (no occlusion)."""
    s = config.image_size
    lo, hi = config.small_size if size == "small" else config.large_size
    w = int(round(_uniform(rng, lo, hi) * s))
    pad = 2
    for _ in range(tries):
        x0 = _randint(rng, pad, s - w - pad + 1)
        y0 = _randint(rng, pad, s - w - pad + 1)
        box = (float(x0), float(y0), float(x0 + w), float(y0 + w))
        if not any(_boxes_clash(box, o.box, 3) for o in placed):
            return box
    return None


def _sample_objects(rng: np.random.Generator, config: SceneConfig, downstream: bool) -> list[SceneObject]:
    """Objects for one scene; downstream scenes always hold at least one held-out combination."""
    for _ in range(100):
        n = _randint(rng, config.min_objects, config.max_objects + 1)
        placed: list[SceneObject] = []
        for k in range(n):
            color, shape = _sample_combo(rng, placed, downstream, downstream and k == 0, config.share_prob)
            size = _pick(rng, SIZES)
            box = _place(rng, config, size, placed)
            if box is None and size == "large":
                size, box = "small", _place(rng, config, "small", placed)
            if box is not None:
                placed.append(SceneObject(shape, color, size, box))
        if len(placed) >= config.min_objects and (not downstream or placed[0].combo in _HELD_OUT):
            order = rng.permutation(len(placed))
            return [placed[int(i)] for i in order]
    raise RobustOFAError(
        f"SceneConfig cannot place {config.min_objects} objects in {config.image_size} px; "
        "lower min_objects or the size ranges"
    )


@functools.lru_cache(maxsize=8)
def _texture_bank(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed smooth and fine noise fields (int16, zero-mean) four times the image side.

    Each image crops both at its own random offsets. Cropping a shared, fixed field keeps rendering
    to a handful of array ops per image (thousands of images a second) while staying a pure function
    of the per-sample seed.
    """
    rng = np.random.default_rng(_TEXTURE_SEED)
    side = 4 * size
    smooth = np.zeros((side, side, 3), dtype=np.float32)
    for cells, amp in ((side // 16, 45.0), (side // 6, 20.0)):
        coarse = rng.integers(0, 256, size=(cells, cells, 3), dtype=np.uint8)
        up = np.asarray(Image.fromarray(coarse).resize((side, side), Image.BILINEAR), dtype=np.float32)
        smooth += (up - 127.5) * (amp / 127.5)
    fine = rng.integers(-10, 11, size=(side, side, 3), dtype=np.int16)
    return np.round(smooth).astype(np.int16), fine


def _crop(rng: np.random.Generator, bank: np.ndarray, size: int) -> np.ndarray:
    y, x = _randint(rng, 0, bank.shape[0] - size + 1), _randint(rng, 0, bank.shape[0] - size + 1)
    return bank[y : y + size, x : x + size]


def _background(rng: np.random.Generator, config: SceneConfig) -> np.ndarray:
    """A mid-grey, tinted noise texture (uint8 HxWx3), so objects sit on real texture, not flat grey."""
    s = config.image_size
    grey = _uniform(rng, 55.0, 145.0)
    base = np.asarray([int(grey + _uniform(rng, -18.0, 18.0)) for _ in range(3)], dtype=np.int16)
    if config.noise_strength <= 0:
        return np.broadcast_to(base.astype(np.uint8), (s, s, 3)).copy()
    k = int(round(config.noise_strength * 256))
    tex = (_crop(rng, _texture_bank(s)[0], s) * k) >> 8
    return np.clip(tex + base, 0, 255).astype(np.uint8)


def _draw_clutter(draw: ImageDraw.ImageDraw, rng: np.random.Generator, config: SceneConfig) -> None:
    s = config.image_size
    for _ in range(_randint(rng, 0, config.max_clutter + 1)):
        color = (_randint(rng, 30, 256), _randint(rng, 30, 256), _randint(rng, 30, 256))
        x, y = _randint(rng, 0, s), _randint(rng, 0, s)
        if rng.random() < 0.5:
            r = _randint(rng, 1, 3)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=color)
        else:
            dx, dy = _randint(rng, -6, 7), _randint(rng, -6, 7)
            draw.line([x, y, x + dx, y + dy], fill=color, width=1)


def _draw_object(draw: ImageDraw.ImageDraw, o: SceneObject, rng: np.random.Generator, jitter: int) -> None:
    fill = tuple(min(255, max(0, c + _randint(rng, -jitter, jitter + 1))) for c in COLORS[o.color])
    edge = tuple(int(v * 0.55) for v in fill)
    x0, y0, x1, y1 = o.box
    x1, y1 = x1 - 1, y1 - 1
    w, h = x1 - x0, y1 - y0
    if o.shape == "square":
        draw.rectangle([x0, y0, x1, y1], fill=fill, outline=edge)
    elif o.shape == "circle":
        draw.ellipse([x0, y0, x1, y1], fill=fill, outline=edge)
    elif o.shape == "triangle":
        draw.polygon([(x0 + w / 2, y0), (x1, y1), (x0, y1)], fill=fill, outline=edge)
    elif o.shape == "diamond":
        cx, cy = x0 + w / 2, y0 + h / 2
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=fill, outline=edge)
    else:  # cross: a plus sign with arms one third of the box wide
        a, b = x0 + w / 3, x0 + 2 * w / 3
        c, d = y0 + h / 3, y0 + 2 * h / 3
        pts = [
            (a, y0),
            (b, y0),
            (b, c),
            (x1, c),
            (x1, d),
            (b, d),
            (b, y1),
            (a, y1),
            (a, d),
            (x0, d),
            (x0, c),
            (a, c),
        ]
        draw.polygon(pts, fill=fill, outline=edge)


def render_scene(
    objects: Sequence[SceneObject], rng: np.random.Generator, config: SceneConfig
) -> Image.Image:
    """Draw the scene: textured background, clutter, objects, then sensor noise over everything."""
    img = Image.fromarray(_background(rng, config))
    draw = ImageDraw.Draw(img)
    _draw_clutter(draw, rng, config)
    for o in objects:
        _draw_object(draw, o, rng, config.color_jitter)
    if config.noise_strength <= 0:
        return img
    k = int(round(config.noise_strength * 256))
    noise = (_crop(rng, _texture_bank(config.image_size)[1], config.image_size) * k) >> 8
    return Image.fromarray(np.clip(np.asarray(img, dtype=np.int16) + noise, 0, 255).astype(np.uint8))


# ---------------------------------------------------------------------------------------------------
# Building task items from a scene
# ---------------------------------------------------------------------------------------------------


@dataclass
class _Built:
    """What a builder found in a scene: text and answer plus what it refers to (for split checks)."""

    text: str
    answer: str = ""
    kind: str = ""
    refs: list[int] = field(default_factory=list)
    mentions: list[tuple[str, str]] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    captions: list[str] = field(default_factory=list)


@dataclass
class _Ctx:
    rng: np.random.Generator
    config: SceneConfig
    objects: list[SceneObject]
    downstream: bool

    @property
    def margin(self) -> float:
        return self.config.relation_margin * self.config.image_size

    def focus(self) -> list[int]:
        """Objects a downstream item must be about (held-out ones); any object in pretraining."""
        if self.downstream:
            return [i for i, o in enumerate(self.objects) if o.combo in _HELD_OUT]
        return list(range(len(self.objects)))

    def count(self, d: Desc) -> int:
        return sum(d.matches(o) for o in self.objects)

    def unique(self, d: Desc) -> bool:
        return self.count(d) == 1

    def combo_ok(self, combo: tuple[str, str] | None) -> bool:
        """Pretraining may never name a held-out combination; downstream may name anything."""
        return self.downstream or combo is None or combo not in _HELD_OUT

    def valid(self, b: _Built) -> bool:
        """The split contract: pretraining never names held-out pairs; downstream is about one."""
        if not all(self.combo_ok(m) for m in b.mentions):
            return False
        if not self.downstream:
            return True
        return any(self.objects[r].combo in _HELD_OUT for r in b.refs) or any(
            m in _HELD_OUT for m in b.mentions
        )

    def shuffled(self, items: Sequence[_T]) -> list[_T]:
        order = self.rng.permutation(len(items))
        return [items[int(i)] for i in order]


_FIELD_SETS: tuple[tuple[str, ...], ...] = (
    ("shape",),
    ("color", "shape"),
    ("size", "shape"),
    ("size", "color", "shape"),
    ("color",),
    ("size", "color"),
    ("size",),
)


def _desc_of(o: SceneObject, fields: Sequence[str]) -> Desc:
    return Desc(
        color=o.color if "color" in fields else None,
        shape=o.shape if "shape" in fields else None,
        size=o.size if "size" in fields else None,
    )


def _unique_descs(ctx: _Ctx, idx: int, exclude: str | None = None) -> list[Desc]:
    """Descriptions that pick out exactly object ``idx`` (optionally without naming ``exclude``)."""
    o = ctx.objects[idx]
    out = []
    for fields in _FIELD_SETS:
        if exclude in fields:
            continue
        d = _desc_of(o, fields)
        if ctx.unique(d) and ctx.combo_ok(d.combo):
            out.append(d)
    return out


def _prefer_shape(ctx: _Ctx, descs: list[Desc]) -> Desc:
    """Mostly name the shape (natural and informative), sometimes only colour/size."""
    with_shape = [d for d in descs if d.shape]
    if with_shape and ctx.rng.random() < 0.8:
        return _pick(ctx.rng, with_shape)
    return _pick(ctx.rng, descs)


def _alone_in_relation(ctx: _Ctx, idx: int, d: Desc, relation: str, landmark: int) -> bool:
    """``idx`` is clearly ``relation`` the landmark and no other object matching ``d`` is at all."""
    objs = ctx.objects
    if relation_separation(objs[idx], objs[landmark], relation) < ctx.margin:
        return False
    for j, o in enumerate(objs):
        if j not in (idx, landmark) and d.matches(o):
            if relation_separation(o, objs[landmark], relation) > 0:
                return False
    return True


# --- grounding ------------------------------------------------------------------------------------


def _ground_attribute(ctx: _Ctx, t: int) -> _Built | None:
    descs = _unique_descs(ctx, t)
    if not descs:
        return None
    d = _prefer_shape(ctx, descs)
    return _Built(
        d.definite(),
        kind="attribute",
        refs=[t],
        mentions=[d.combo] if d.combo else [],
        extra={"target": t, "expr": {"desc": d._asdict(), "relation": None, "landmark": None}},
    )


def _relational_reference(
    ctx: _Ctx, t: int, exclude: str | None = None
) -> tuple[Desc, str, int, Desc] | None:
    """(desc, relation, landmark, landmark desc) picking out ``t`` as in "the square left of the red
    circle", preferring a desc that is ambiguous on its own so the relation is really needed.

    ``exclude`` keeps an attribute out of the desc (it is what a question asks). In downstream splits
    a target outside the held-out pairs gets a held-out landmark, so the item is still about one.
    """
    objs, rng = ctx.objects, ctx.rng
    pool = [j for j in range(len(objs)) if j != t]
    if ctx.downstream and objs[t].combo not in _HELD_OUT:
        pool = [j for j in pool if objs[j].combo in _HELD_OUT]
    fields = [f for f in _FIELD_SETS if exclude not in f and f != ("size",)]
    if exclude in ("color", "size"):
        fields = [f for f in fields if "shape" in f]
    for j in ctx.shuffled(pool):
        rels = [r for r in RELATIONS if relation_separation(objs[t], objs[j], r) >= ctx.margin]
        land_descs = _unique_descs(ctx, j)
        if not rels or not land_descs:
            continue
        r = _pick(rng, rels)
        cands = [_desc_of(objs[t], f) for f in fields]
        cands = [d for d in cands if _alone_in_relation(ctx, t, d, r, j) and ctx.combo_ok(d.combo)]
        if not cands:
            continue
        ambiguous = [d for d in cands if not ctx.unique(d)]
        d = _pick(rng, ambiguous) if ambiguous and rng.random() < 0.8 else _pick(rng, cands)
        return d, r, j, _prefer_shape(ctx, land_descs)
    return None


def _ground_relational(ctx: _Ctx, t: int) -> _Built | None:
    found = _relational_reference(ctx, t)
    if found is None:
        return None
    d, r, j, dl = found
    expr = {"desc": d._asdict(), "relation": r, "landmark": j, "landmark_desc": dl._asdict()}
    return _Built(
        _t_relational_expr(d, r, dl),
        kind="relational",
        refs=[t, j],
        mentions=_mentions(d, dl),
        extra={"target": t, "expr": expr},
    )


def _build_grounding(ctx: _Ctx) -> _Built | None:
    focus = ctx.focus()
    if not focus:
        return None
    t = _pick(ctx.rng, focus)
    if ctx.rng.random() < 0.45:
        return _ground_relational(ctx, t) or _ground_attribute(ctx, t)
    return _ground_attribute(ctx, t) or _ground_relational(ctx, t)


# --- shared pieces for VE and VQA -----------------------------------------------------------------


def _absent_descs(ctx: _Ctx, with_size: bool) -> list[Desc]:
    """Colour+shape(+size) descriptions matching nothing, mostly one attribute off a present object."""
    near: list[Desc] = []
    for o in ctx.objects:
        size = o.size if with_size else None
        near += [Desc(c, o.shape, size) for c in COLOR_NAMES if c != o.color]
        near += [Desc(o.color, s, size) for s in SHAPES if s != o.shape]
        if with_size:
            near.append(Desc(o.color, o.shape, "large" if o.size == "small" else "small"))
    if ctx.rng.random() < 0.25:  # sometimes anything absent, not only near misses
        near = [Desc(c, s) for c in COLOR_NAMES for s in SHAPES]
    out = [d for d in near if ctx.count(d) == 0 and ctx.combo_ok(d.combo)]
    if ctx.downstream:
        out = [d for d in out if d.combo in _HELD_OUT]
    return out


def _present_desc(ctx: _Ctx, t: int, with_size: bool) -> Desc:
    o = ctx.objects[t]
    return Desc(o.color, o.shape, o.size if with_size else None)


def _count_candidates(ctx: _Ctx) -> list[tuple[Desc, list[int]]]:
    """Countable descriptions with the objects they count, restricted to what the split allows."""
    descs = [Desc(shape=s) for s in SHAPES] + [Desc(color=c) for c in COLOR_NAMES]
    descs += [Desc(c, s) for c in COLOR_NAMES for s in SHAPES if ctx.combo_ok((c, s))]
    out = []
    for d in descs:
        refs = [i for i, o in enumerate(ctx.objects) if d.matches(o)]
        b = _Built("", refs=refs, mentions=[d.combo] if d.combo else [])
        if ctx.valid(b):
            out.append((d, refs))
    return out


def _pick_count(ctx: _Ctx) -> tuple[Desc, list[int]]:
    """Pick the count value uniformly first so answers are spread over 0, 1, 2, ... not mostly 1."""
    cands = _count_candidates(ctx)
    values = sorted({len(r) for _, r in cands})
    n = _pick(ctx.rng, values)
    return _pick(ctx.rng, [c for c in cands if len(c[1]) == n])


def _pair_with_relation(ctx: _Ctx, truth: bool) -> tuple[int, int, str, Desc, Desc] | None:
    """Two uniquely describable objects and a relation that clearly holds (or clearly fails)."""
    objs = ctx.objects
    focus = set(ctx.focus())
    pairs = [
        (a, b) for a in range(len(objs)) for b in range(len(objs)) if a != b and (a in focus or b in focus)
    ]
    for a, b in ctx.shuffled(pairs):
        sign = 1 if truth else -1
        rels = [r for r in RELATIONS if sign * relation_separation(objs[a], objs[b], r) >= ctx.margin]
        da, db = _unique_descs(ctx, a), _unique_descs(ctx, b)
        da, db = [d for d in da if d.shape], [d for d in db if d.shape]
        if rels and da and db:
            return a, b, _pick(ctx.rng, rels), _pick(ctx.rng, da), _pick(ctx.rng, db)
    return None


def _mentions(*descs: Desc) -> list[tuple[str, str]]:
    return [d.combo for d in descs if d.combo]


# --- visual entailment ----------------------------------------------------------------------------


def _ve_exists(ctx: _Ctx, truth: bool) -> _Built | None:
    with_size = ctx.rng.random() < 0.3
    if truth:
        t = _pick(ctx.rng, ctx.focus())
        d = _present_desc(ctx, t, with_size)
        refs = [i for i, o in enumerate(ctx.objects) if d.matches(o)]
    else:
        cands = _absent_descs(ctx, with_size)
        if not cands:
            return None
        d, refs = _pick(ctx.rng, cands), []
    return _Built(_t_exists(d), kind="exists", refs=refs, mentions=_mentions(d))


def _ve_attribute(ctx: _Ctx, truth: bool) -> _Built | None:
    t = _pick(ctx.rng, ctx.focus())
    o = ctx.objects[t]
    for attribute in ctx.shuffled(("color", "color", "shape", "size")):
        subjects = _unique_descs(ctx, t, exclude=attribute)
        if subjects:
            break
    else:
        return None
    subject = _pick(ctx.rng, subjects)
    actual = getattr(o, attribute)
    values = {"color": COLOR_NAMES, "shape": SHAPES, "size": SIZES}[attribute]
    options = [actual] if truth else [v for v in values if v != actual]
    claims = [subject._replace(**{attribute: v}) for v in options]
    claims = [c for c in claims if ctx.combo_ok(c.combo)]
    if ctx.downstream and not truth:
        # True claims about held-out objects name held-out pairs; make false ones do so too where
        # possible, or "the triangle is red" would be true merely because red triangles are held out.
        claims = [c for c in claims if c.combo in _HELD_OUT] or claims
    if not claims:
        return None
    claim = _pick(ctx.rng, claims)
    text = _t_attr(subject, attribute, getattr(claim, attribute))
    return _Built(text, kind=f"attribute_{attribute}", refs=[t], mentions=_mentions(subject, claim))


def _ve_count(ctx: _Ctx, truth: bool) -> _Built | None:
    d, refs = _pick_count(ctx)
    n = len(refs)
    if not truth:
        n = max(0, n + 1) if n == 0 or ctx.rng.random() < 0.5 else n - 1
        n = min(n, ctx.config.max_objects)
        if n == len(refs):
            return None
    return _Built(_t_count(d, n), kind="count", refs=refs, mentions=_mentions(d), extra={"claimed": n})


def _ve_relation(ctx: _Ctx, truth: bool) -> _Built | None:
    found = _pair_with_relation(ctx, truth)
    if found is None:
        return None
    a, b, r, da, db = found
    return _Built(_t_relation(da, r, db), kind="relation", refs=[a, b], mentions=_mentions(da, db))


def _ve_undecidable(ctx: _Ctx, truth: bool) -> _Built | None:
    """ "the red circle is wooden": the picture cannot tell, so the label is maybe."""
    t = _pick(ctx.rng, ctx.focus())
    subjects = _unique_descs(ctx, t)
    if not subjects:
        return None
    d = _prefer_shape(ctx, subjects)
    pred = _pick(ctx.rng, _UNDECIDABLE_PREDICATES)
    return _Built(_t_undecidable(d, pred), kind="undecidable", refs=[t], mentions=_mentions(d))


def _ve_undecidable_exists(ctx: _Ctx, truth: bool) -> _Built | None:
    """ "there is a wooden red circle": maybe if a red circle is shown, no if none is.

    Its label depends on the image, so "maybe" is not readable off the predicate word alone.
    """
    pred = _pick(ctx.rng, [p for p in _UNDECIDABLE_PREDICATES if p[0] != "event"])
    # Shape-only phrasing ("there is a heavy square") only in pretraining, and for both labels: a
    # downstream "no" must name an absent held-out pair, so there it would give "maybe" away.
    shape_only = not ctx.downstream and ctx.rng.random() < 0.3
    if truth:
        t = _pick(ctx.rng, ctx.focus())
        d = _desc_of(ctx.objects[t], ("shape",) if shape_only else ("color", "shape"))
        refs = [i for i, o in enumerate(ctx.objects) if d.matches(o)]
    else:
        if shape_only:
            cands = [Desc(shape=s) for s in SHAPES if ctx.count(Desc(shape=s)) == 0]
        else:
            cands = _absent_descs(ctx, with_size=False)
        if not cands:
            return None
        d, refs = _pick(ctx.rng, cands), []
    return _Built(_t_undecidable_exists(d, pred), kind="undecidable_exists", refs=refs, mentions=_mentions(d))


def _ve_depth(ctx: _Ctx, truth: bool) -> _Built | None:
    """ "the red circle is behind the blue square": no overlap, so depth order is unknowable."""
    found = _pair_with_relation(ctx, True) or _pair_with_relation(ctx, False)
    if found is None:
        return None
    a, b, _, da, db = found
    r = _pick(ctx.rng, DEPTH_RELATIONS)
    return _Built(_t_relation(da, r, db), kind="depth", refs=[a, b], mentions=_mentions(da, db))


_Builder = Callable[[_Ctx, bool], "_Built | None"]

#: Per label: (builder, truth passed to it, weight). "no" draws a third of its items from the
#: undecidable-existential template so that template is about as often "no" as "maybe".
_VE_PLANS: dict[str, list[tuple[_Builder, bool, float]]] = {
    "yes": [(_ve_exists, True, 3), (_ve_attribute, True, 3), (_ve_count, True, 2), (_ve_relation, True, 3)],
    "no": [
        (_ve_exists, False, 2),
        (_ve_attribute, False, 2),
        (_ve_count, False, 1.5),
        (_ve_relation, False, 2),
        (_ve_undecidable_exists, False, 3.5),
    ],
    "maybe": [(_ve_undecidable, True, 4), (_ve_undecidable_exists, True, 4), (_ve_depth, True, 1.5)],
}


def _weighted_order(rng: np.random.Generator, plans: Sequence[tuple]) -> list[tuple]:
    """All plans in a weighted random order (without replacement): the first is the one wanted, the
    rest are fallbacks for a scene it does not fit, and they too follow the weights so no single
    template soaks up the failures."""
    left = list(plans)
    out = []
    while left:
        out.append(left.pop(_pick_weighted(rng, [p[-1] for p in left])))
    return out


def _ve_planner(rng: np.random.Generator) -> Callable[[_Ctx], _Built | None]:
    label = _pick(rng, VE_LABELS)

    def build(ctx: _Ctx) -> _Built | None:
        for builder, truth, _ in _weighted_order(ctx.rng, _VE_PLANS[label]):
            b = builder(ctx, truth)
            if b is not None and ctx.valid(b):
                b.answer = label
                return b
        return None

    return build


# --- VQA ------------------------------------------------------------------------------------------


def _q_attribute(ctx: _Ctx, attribute: str) -> _Built | None:
    """ "what color is the triangle?" or, a third of the time, "... the triangle left of the red
    square?". The relational form also lets downstream questions ask about any object next to a
    held-out one, so the answer is not narrowed to the held-out pairs' attributes."""
    template = {"color": _t_q_color, "shape": _t_q_shape, "size": _t_q_size}[attribute]
    if ctx.rng.random() < 0.35:
        t = _pick(ctx.rng, range(len(ctx.objects)))
        found = _relational_reference(ctx, t, exclude=attribute)
        if found is None:
            return None
        d, r, j, dl = found
        answer = getattr(ctx.objects[t], attribute)
        phrase = _t_relational_expr(d, r, dl)
        return _Built(template(phrase), answer, f"{attribute}_relational", [t, j], _mentions(d, dl))
    t = _pick(ctx.rng, ctx.focus())
    subjects = _unique_descs(ctx, t, exclude=attribute)
    if attribute != "shape":
        subjects = [d for d in subjects if d.shape]
    if not subjects:
        return None
    d = _pick(ctx.rng, subjects)
    answer = getattr(ctx.objects[t], attribute)
    return _Built(template(d.definite()), answer, kind=attribute, refs=[t], mentions=_mentions(d))


def _q_color(ctx: _Ctx, truth: bool) -> _Built | None:
    return _q_attribute(ctx, "color")


def _q_shape(ctx: _Ctx, truth: bool) -> _Built | None:
    return _q_attribute(ctx, "shape")


def _q_size(ctx: _Ctx, truth: bool) -> _Built | None:
    return _q_attribute(ctx, "size")


def _q_count(ctx: _Ctx, truth: bool) -> _Built | None:
    d, refs = _pick_count(ctx)
    return _Built(_t_q_count(d), str(len(refs)), kind="count", refs=refs, mentions=_mentions(d))


def _q_exists(ctx: _Ctx, truth: bool) -> _Built | None:
    b = _ve_exists(ctx, truth)
    if b is None:
        return None
    d_text = b.text.removeprefix("there is ")
    return _Built(f"is there {d_text}?", "yes" if truth else "no", "exists", b.refs, b.mentions)


def _q_relation(ctx: _Ctx, truth: bool) -> _Built | None:
    found = _pair_with_relation(ctx, truth)
    if found is None:
        return None
    a, b, r, da, db = found
    text = _t_q_relation(da, r, db)
    return _Built(text, "yes" if truth else "no", "relation", [a, b], _mentions(da, db))


def _q_what_relation(ctx: _Ctx, truth: bool) -> _Built | None:
    """ "what is left of the red circle?" -- answered by the one object clearly on that side."""
    objs = ctx.objects
    ask_color = ctx.rng.random() < 0.4
    for j in ctx.shuffled(list(range(len(objs)))):
        land = _unique_descs(ctx, j)
        land = [d for d in land if d.shape]
        if not land:
            continue
        for r in ctx.shuffled(list(RELATIONS)):
            hits = [t for t in range(len(objs)) if t != j and _alone_in_relation(ctx, t, Desc(), r, j)]
            if len(hits) != 1:
                continue
            t, dl = hits[0], _pick(ctx.rng, land)
            text = _t_q_color_rel(r, dl) if ask_color else _t_q_what_rel(r, dl)
            answer = objs[t].color if ask_color else objs[t].shape
            b = _Built(
                text, answer, "relation_color" if ask_color else "relation_shape", [t, j], _mentions(dl)
            )
            if ctx.valid(b):
                return b
    return None


_VQA_PLANS: list[tuple[_Builder, bool, float]] = [
    (_q_color, False, 16),
    (_q_shape, False, 16),
    (_q_size, False, 10),
    (_q_count, False, 18),
    (_q_exists, True, 7),
    (_q_exists, False, 7),
    (_q_relation, True, 6),
    (_q_relation, False, 6),
    (_q_what_relation, False, 14),
]


def _vqa_planner(rng: np.random.Generator) -> Callable[[_Ctx], _Built | None]:
    """The question type is fixed before the scene so the type mix does not drift to easy types."""
    builder, truth, _ = _VQA_PLANS[_pick_weighted(rng, [p[2] for p in _VQA_PLANS])]

    def build(ctx: _Ctx) -> _Built | None:
        b = builder(ctx, truth)
        return b if b is not None and ctx.valid(b) else None

    return build


# --- captioning -----------------------------------------------------------------------------------


def _pair_phrase(ctx: _Ctx, a: SceneObject, b: SceneObject) -> str:
    for r in RELATIONS:
        if relation_separation(a, b, r) >= ctx.margin:
            return r
    return "next to"


def _build_caption(ctx: _Ctx) -> _Built | None:
    """Three references: full left-to-right list, counted list, and a relational sentence."""
    order = sorted(range(len(ctx.objects)), key=lambda i: (ctx.objects[i].cx, ctx.objects[i].cy))
    objs = [ctx.objects[i] for i in order]
    full = [Desc(o.color, o.shape, o.size).indefinite() for o in objs]
    plain = [Desc(o.color, o.shape).indefinite() for o in objs]
    n = len(objs)
    if n == 1:
        refs = [full[0], f"one shape: {plain[0]}", f"a picture of {plain[0]}"]
    else:
        rel = f"{plain[0]} {_pair_phrase(ctx, objs[0], objs[1])} {plain[1]}"
        refs = [
            _join(full),
            f"{NUMBER_WORDS[n]} shapes: {_join(plain)}",
            rel if n == 2 else f"{rel}{' and ' if n == 3 else ', '}{_join(full[2:])}",
        ]
    return _Built(refs[0], kind="caption", refs=list(range(n)), captions=refs)


# ---------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------


def _grounding_planner(rng: np.random.Generator) -> Callable[[_Ctx], _Built | None]:
    return lambda ctx: b if (b := _build_grounding(ctx)) is not None and ctx.valid(b) else None


def _caption_planner(rng: np.random.Generator) -> Callable[[_Ctx], _Built | None]:
    return lambda ctx: b if (b := _build_caption(ctx)) is not None and ctx.valid(b) else None


_PLANNERS: dict[str, Callable[[np.random.Generator], Callable[[_Ctx], _Built | None]]] = {
    "grounding": _grounding_planner,
    "ve": _ve_planner,
    "vqa": _vqa_planner,
    "caption": _caption_planner,
}
#: Templates whose answer the text alone decides: "the red circle is wooden" (an undecidable predicate) and
#: "the red circle is behind the blue square" (no overlap, so depth is unknowable) are "maybe" whatever the
#: picture shows. Robustness on them is not evidence about the image pathway; reports break them out
#: (``meta["decided_by"]``: "text" or "image").
TEXT_DECIDED_KINDS: frozenset[str] = frozenset({"undecidable", "depth"})

#: The tasks the generator makes data for, in the order that keys their random streams (part of the
#: benchmark's definition: reordering it would change every generated sample).
SYNTHETIC_TASKS: tuple[str, ...] = tuple(_PLANNERS)


def _check_args(task: str, split: str, n: int, seed: int) -> None:
    if task not in SYNTHETIC_TASKS:
        raise RobustOFAError(f"synthetic task must be one of {', '.join(SYNTHETIC_TASKS)}, got {task!r}")
    if split not in SPLITS:
        raise RobustOFAError(f"synthetic split must be one of {', '.join(SPLITS)}, got {split!r}")
    if not isinstance(n, int) or n < 0:
        raise RobustOFAError(f"synthetic sample count n must be an int >= 0, got {n!r}")
    if not isinstance(seed, int) or seed < 0:
        raise RobustOFAError(f"synthetic seed must be an int >= 0, got {seed!r}")


def _make_sample(task: str, split: str, index: int, config: SceneConfig, seed: int) -> Sample:
    """One sample from its own random stream keyed by (config seed, seed, split, task, index)."""
    key = [config.seed, seed, SPLITS.index(split), SYNTHETIC_TASKS.index(task), index]
    rng = np.random.default_rng(key)
    downstream = split in DOWNSTREAM_SPLITS
    build = _PLANNERS[task](rng)
    for _ in range(200):
        ctx = _Ctx(rng, config, _sample_objects(rng, config, downstream), downstream)
        built = build(ctx)
        if built is not None:
            break
    else:  # pragma: no cover - only reachable with a degenerate config
        raise RobustOFAError(f"synthetic {task} sample {index} of {split}: no valid item in 200 scenes")
    image = render_scene(ctx.objects, rng, config)
    return _to_sample(task, split, index, seed, config, ctx, built, image)


def _to_sample(
    task: str, split: str, i: int, seed: int, config: SceneConfig, ctx: _Ctx, b: _Built, image: Image.Image
) -> Sample:
    combos = sorted({ctx.objects[r].combo for r in b.refs} | set(b.mentions))
    meta = {
        "source": "synthetic",
        "split": split,
        "index": i,
        "seed": seed,
        "config_seed": config.seed,
        "kind": b.kind,
        "decided_by": "text" if b.kind in TEXT_DECIDED_KINDS else "image",
        "scene": [o.to_meta() for o in ctx.objects],
        "refs": list(b.refs),
        "combos": [list(c) for c in combos],
        "held_out": any(c in _HELD_OUT for c in combos),
        **b.extra,
    }
    s = Sample(uid=f"syn-{split}-{task}-{i:06d}", task=task, image=image, text=b.text, meta=meta)
    _FILL[task](s, ctx, b)
    return s


def _fill_grounding(s: Sample, ctx: _Ctx, b: _Built) -> None:
    s.box = ctx.objects[b.extra["target"]].box


def _fill_ve(s: Sample, ctx: _Ctx, b: _Built) -> None:
    s.label = b.answer


def _fill_vqa(s: Sample, ctx: _Ctx, b: _Built) -> None:
    # Ten identical "annotators", as in VQA v2, so min(matches / 3, 1) scores a right answer 1.
    s.label, s.answers = b.answer, [b.answer] * 10


def _fill_caption(s: Sample, ctx: _Ctx, b: _Built) -> None:
    s.text, s.captions = "", list(b.captions)


#: How each task's answer goes into its ``Sample`` (the generator's side of the task's fields).
_FILL: dict[str, Callable[[Sample, _Ctx, _Built], None]] = {
    "grounding": _fill_grounding, "ve": _fill_ve, "vqa": _fill_vqa, "caption": _fill_caption,
}


def generate(task: str, split: str, n: int, config: SceneConfig | None = None, seed: int = 0) -> list[Sample]:
    """``n`` samples of one task from one split; sample ``i`` is the same whatever ``n`` is."""
    config = config or SceneConfig()
    _check_args(task, split, n, seed)
    return [_make_sample(task, split, i, config, seed) for i in range(n)]


def generate_all(
    split: str,
    n_per_task: int,
    config: SceneConfig | None = None,
    seed: int = 0,
    tasks: Sequence[str] = SYNTHETIC_TASKS,
) -> list[Sample]:
    """Mixed-task data for multitask pretraining: tasks interleaved round-robin, deterministically."""
    per_task = [generate(t, split, n_per_task, config, seed) for t in tasks]
    return [s for group in zip(*per_task) for s in group]


@dataclass(frozen=True)
class SyntheticSpec:
    """A named recipe for one synthetic data set, so experiments can record exactly what they used."""

    split: str = "train"
    n_per_task: int = 1000
    tasks: tuple[str, ...] = SYNTHETIC_TASKS
    config: SceneConfig = field(default_factory=SceneConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.tasks:
            raise RobustOFAError("SyntheticSpec.tasks must name at least one task, got ()")
        for t in self.tasks:
            _check_args(t, self.split, self.n_per_task, self.seed)

    def generate(self) -> list[Sample]:
        return generate_all(self.split, self.n_per_task, self.config, self.seed, self.tasks)


def is_held_out(color: str, shape: str) -> bool:
    """Whether a (colour, shape) pair is reserved for the downstream splits."""
    return (color, shape) in _HELD_OUT


def _all_descs() -> list[Desc]:
    return [
        Desc(c, s, z)
        for z in (None, *SIZES)
        for c in (None, *COLOR_NAMES)
        for s in (None, *SHAPES)
        if (c, s, z) != (None, None, None)
    ]


def corpus_texts() -> list[str]:
    """Strings covering every word and template the generator can emit (for tokenizer training)."""
    descs = _all_descs()
    d1, d2 = Desc("red", "square"), Desc("blue", "circle")
    out: list[str] = []
    for d in descs:
        out += [d.definite(), _t_exists(d), _t_q_exists(d), _t_q_count(d), _t_count(d, 0), _t_count(d, 1)]
        out += [_t_q_color(d.definite()), _t_q_shape(d.definite()), _t_q_size(d.definite())]
    for n in range(2, MAX_OBJECTS + 1):
        out.append(_t_count(Desc(shape="circle"), n))
        out.append(f"{NUMBER_WORDS[n]} shapes: " + _join([d1.indefinite()] * n))
    for r in RELATIONS:
        out += [_t_relational_expr(d1, r, d2), _t_relation(d1, r, d2), _t_q_relation(d1, r, d2)]
        out += [_t_q_what_rel(r, d2), _t_q_color_rel(r, d2)]
    for r in DEPTH_RELATIONS:
        out.append(_t_relation(d1, r, d2))
    for attribute, values in (("color", COLOR_NAMES), ("shape", SHAPES), ("size", SIZES)):
        out += [_t_attr(Desc(shape="circle"), attribute, v) for v in values]
    for p in _UNDECIDABLE_PREDICATES:
        out.append(_t_undecidable(d1, p))
        if p[0] != "event":
            out += [_t_undecidable_exists(d1, p), _t_undecidable_exists(Desc("orange", "cross"), p)]
    out += [
        "a large red square, a small blue circle and a large green triangle",
        "one shape: a red square",
        "a picture of a red square",
        "a red square next to a blue circle and a small green triangle",
    ]
    out += list(VQA_ANSWERS) + list(VE_LABELS)
    return out


_WORD_RE = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


def words_of(text: str) -> list[str]:
    """The word/punctuation tokens of a generated text (what ``corpus_texts`` must cover)."""
    return _WORD_RE.findall(text.lower())


__all__ = [
    "COLORS",
    "COLOR_NAMES",
    "COUNT_ANSWERS",
    "DOWNSTREAM_SPLITS",
    "HELD_OUT_COMBOS",
    "MAX_OBJECTS",
    "PRETRAIN_SPLITS",
    "RELATIONS",
    "SHAPES",
    "SIZES",
    "SPLITS",
    "VQA_ANSWERS",
    "Desc",
    "SceneConfig",
    "SceneObject",
    "SyntheticSpec",
    "corpus_texts",
    "generate",
    "generate_all",
    "is_held_out",
    "relation_separation",
    "render_scene",
    "words_of",
]

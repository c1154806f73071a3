"""The generated benchmark's ground truth for *any* text about one of its scenes: an oracle for text attacks.

A text attack on a generated sample (``robustbench_ofa.data.synthetic``) proposes edited hypotheses,
questions and expressions. Whether an edit kept the answer is not a matter of similarity scores here: the
scene is known (``sample.meta["scene"]``), so the answer of the edited text can be derived again. This
module reads a text back into the generator's templates (the same vocabulary, the same sentence forms)
and evaluates it on the scene with the generator's own rules:

* visual entailment: "yes" / "no" / "maybe" (existence, attribute, count and relation claims; the
  undecidable predicates and depth relations give "maybe");
* VQA: the answer word (colour, shape, size, count, yes/no, "what is left of ...");
* grounding: the object the expression picks out.

``None`` means the text no longer says something the scene decides: a word outside the vocabulary ("the
yellow infield", "what semblance is ..."), a sentence form the generator never uses, or a description
that no longer picks out exactly one object ("the red circle is wooden" with two red circles). A text
attack treats both ``None`` and a changed answer as a label change and rejects the candidate.

Reading is a human's, within limits that are listed here rather than guessed:

* invisible and direction-control characters (Unicode format characters) are not seen; a backspace
  or delete control character removes the character before it (what Bad Characters' edits look like
  on screen); letter case and the final "?"/"." do not matter; "a"/"an" are the same word;
* a few unambiguous variants of vocabulary words are read as them (:data:`VARIANTS`: "colour", "big",
  "little", "rhombus", "under", digits for number words, ...);
* with ``is_word`` given (a predicate telling real English words, e.g. WordNet's), a token of at least
  four letters that is no English word and is one edit (insertion, deletion, substitution, adjacent
  swap) away from exactly one vocabulary word is read as that word, as a typo ("squrae", "yelow");
  a real word ("gold" next to "cold") is never read as another one.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from robustbench_ofa.data import synthetic as syn
from robustbench_ofa.data.types import Sample

#: Tasks whose free text the oracle can judge (captioning has no free text: its prompt is fixed).
ORACLE_TASKS: tuple[str, ...] = ("grounding", "ve", "vqa")

#: Meaning-preserving variants read as the generator's word (one whitespace word each; in this world of
#: two sizes "big" is "large"; the diamonds are drawn as rhombi; "over"/"under" are "above"/"below").
VARIANTS: dict[str, str] = {
    "colour": "color", "big": "large", "little": "small", "rhombus": "diamond", "rhombuses": "diamonds",
    "rhombi": "diamonds", "lozenge": "diamond", "lozenges": "diamonds", "disc": "circle", "discs": "circles",
    "disk": "circle", "disks": "circles", "thing": "object", "things": "objects", "over": "above",
    "under": "below", "beneath": "below", "underneath": "below",
    **{str(i): w for i, w in enumerate(syn.NUMBER_WORDS)},
}

_PLURALS: dict[str, str | None] = {syn.Desc(shape=s).plural(): s for s in syn.SHAPES}
_PLURALS.update({syn.Desc().plural(): None, "shapes": None})
_SINGULAR_OBJECT = ("object", "shape")
_ADJECTIVES = frozenset(syn.UNDECIDABLE_ADJECTIVES)
_MATERIALS = frozenset(syn.UNDECIDABLE_MATERIALS)
_EVENTS = {e.split()[-1]: e for e in syn.UNDECIDABLE_EVENTS}  # "first" -> "was drawn first"
_NUMBERS = {w: i for i, w in enumerate(syn.NUMBER_WORDS)}
_TOKEN = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")
_DELETERS = ("\b", "\x7f")


@functools.lru_cache(maxsize=1)
def vocabulary() -> frozenset[str]:
    """Every word the generator's templates can emit (from ``synthetic.corpus_texts``)."""
    return frozenset(w for t in syn.corpus_texts() for w in syn.words_of(t) if w.isalnum())


def protected_vocabulary() -> frozenset[str]:
    """The words a text attack may not change on the generated benchmark by default (``--protect``):
    its attribute, object, relation, predicate and question vocabulary, in every form it emits."""
    words = {*syn.COLOR_NAMES, *syn.SHAPES, *_PLURALS, *syn.SIZES, *syn.NUMBER_WORDS, *_ADJECTIVES, *_MATERIALS,
             "object", "objects"}
    for phrase in (*syn.RELATIONS, *syn.DEPTH_RELATIONS, *syn.UNDECIDABLE_EVENTS, "made of"):
        words.update(w for w in phrase.split() if w not in ("of", "in", "was"))
    words.update(("what", "color", "shape", "size", "how", "many"))
    return frozenset(words)


def _render(text: str) -> str:
    """What a reader sees: format characters dropped, a deletion character removes its predecessor."""
    out: list[str] = []
    for ch in unicodedata.normalize("NFKC", text):
        if ch in _DELETERS:
            if out:
                out.pop()
            continue
        cat = unicodedata.category(ch)
        if cat == "Cf" or (cat == "Cc" and not ch.isspace()):
            continue
        out.append(ch)
    return "".join(out)


def _one_edit(a: str, b: str) -> bool:
    """Damerau-Levenshtein distance exactly 1 (one insertion, deletion, substitution or adjacent swap)."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    i = next((k for k in range(len(short)) if short[k] != long_[k]), len(short))
    return short[i:] == long_[i + 1:]


def read(text: str, is_word: Callable[[str], bool] | None = None) -> list[str] | None:
    """The text as the generator's canonical words (final "?"/"." dropped), or None if a token is unknown."""
    toks = _TOKEN.findall(_render(text).lower())
    while toks and toks[-1] in ("?", "."):
        toks.pop()
    known = vocabulary()
    out = []
    for t in toks:
        w = VARIANTS.get(t, t)
        if w not in known:
            w = _typo(t, is_word) if is_word is not None else None
            if w is None:
                return None
        out.append(w)
    return out


def _typo(token: str, is_word: Callable[[str], bool]) -> str | None:
    if len(token) < 4 or not token.isalpha() or is_word(token):
        return None
    near = {VARIANTS.get(w, w) for w in (*vocabulary(), *VARIANTS) if w.isalpha() and _one_edit(token, w)}
    return near.pop() if len(near) == 1 else None


# ---------------------------------------------------------------------------------------------------
# Parsing into the generator's sentence forms
# ---------------------------------------------------------------------------------------------------


class _Cursor:
    def __init__(self, toks: Sequence[str]):
        self.toks, self.i = list(toks), 0

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, *words: str) -> bool:
        """Consume ``words`` in order if they come next (all or nothing)."""
        if self.toks[self.i:self.i + len(words)] == list(words):
            self.i += len(words)
            return True
        return False

    def one_of(self, options) -> str | None:
        w = self.peek()
        if w is not None and w in options:
            self.i += 1
            return w
        return None

    @property
    def done(self) -> bool:
        return self.i == len(self.toks)


def _mods(c: _Cursor) -> dict | None:
    """Size and colour words before the noun (each at most once, in any order)."""
    got: dict = {}
    while True:
        w = c.peek()
        kind = "size" if w in syn.SIZES else "color" if w in syn.COLORS else None
        if kind is None:
            return got
        if kind in got:
            return None
        got[kind] = w
        c.i += 1


def _noun(c: _Cursor, plural: bool = False) -> tuple[bool, str | None]:
    """(found, shape or None for "object")."""
    w = c.peek()
    if plural and w in _PLURALS:
        c.i += 1
        return True, _PLURALS[w]
    if not plural and (w in syn.SHAPES or w in _SINGULAR_OBJECT):
        c.i += 1
        return True, w if w in syn.SHAPES else None
    return False, None


def _desc(c: _Cursor, plural: bool = False) -> syn.Desc | None:
    mods = _mods(c)
    if mods is None:
        return None
    found, shape = _noun(c, plural)
    return syn.Desc(mods.get("color"), shape, mods.get("size")) if found else None


def _definite(c: _Cursor) -> syn.Desc | None:
    return _desc(c) if c.take("the") else None


def _article(c: _Cursor) -> bool:
    return c.take("a") or c.take("an")


def _relation(c: _Cursor) -> str | None:
    for r in syn.RELATIONS:
        if c.take(*r.split()):
            return r
    return None


def _depth(c: _Cursor) -> str | None:
    for r in syn.DEPTH_RELATIONS:
        if c.take(*r.split()):
            return r
    return None


@dataclass(frozen=True)
class _Ref:
    """A referring expression: "the D" or "the D REL the DL"."""

    desc: syn.Desc
    relation: str | None = None
    landmark: syn.Desc | None = None


def _reference(c: _Cursor) -> _Ref | None:
    d = _definite(c)
    if d is None:
        return None
    save = c.i
    r = _relation(c)
    if r is not None:
        dl = _definite(c)
        if dl is not None:
            return _Ref(d, r, dl)
    c.i = save
    return _Ref(d)


def _full(parse: Callable[[_Cursor], tuple | None], toks: Sequence[str]) -> tuple | None:
    c = _Cursor(toks)
    out = parse(c)
    return out if out is not None and c.done else None


def _first(parsers: Sequence[Callable[[_Cursor], tuple | None]], toks: Sequence[str]) -> tuple | None:
    for p in parsers:
        out = _full(p, toks)
        if out is not None:
            return out
    return None


# --- visual entailment ----------------------------------------------------------------------------


def _ve_there_is(c: _Cursor):
    if not c.take("there", "is"):
        return None
    if c.take("one"):
        d = _desc(c)
        return ("count", d, 1) if d is not None else None
    if not _article(c):
        return None
    adj = c.one_of(_ADJECTIVES)
    d = _desc(c)
    if d is None:
        return None
    if c.take("made", "of"):
        material = c.one_of(_MATERIALS)
        return ("exists_maybe", d) if material is not None and adj is None else None
    return ("exists_maybe", d) if adj is not None else ("exists", d)


def _ve_there_are(c: _Cursor):
    if not c.take("there", "are"):
        return None
    n = 0 if c.take("no") else _NUMBERS.get(c.one_of(_NUMBERS) or "")
    if n is None:
        return None
    d = _desc(c, plural=True)
    return ("count", d, n) if d is not None else None


def _ve_subject(c: _Cursor):
    d = _definite(c)
    if d is None:
        return None
    if c.take("was", "drawn"):
        return ("undecidable", d) if c.one_of(_EVENTS) else None
    if not c.take("is"):
        return None
    if c.take("made", "of"):
        return ("undecidable", d) if c.one_of(_MATERIALS) else None
    if c.one_of(_ADJECTIVES) is not None:
        return ("undecidable", d)
    if (w := c.one_of(syn.COLORS)) is not None:
        return ("attribute", d, "color", w)
    if (w := c.one_of(syn.SIZES)) is not None:
        return ("attribute", d, "size", w)
    save = c.i
    if _article(c) and (w := c.one_of(syn.SHAPES)) is not None:
        return ("attribute", d, "shape", w)
    c.i = save
    if (r := _relation(c)) is not None:
        other = _definite(c)
        return ("relation", d, r, other) if other is not None else None
    if _depth(c) is not None:
        other = _definite(c)
        return ("depth", d, other) if other is not None else None
    return None


# --- VQA ------------------------------------------------------------------------------------------


def _q_what(c: _Cursor):
    if not c.take("what"):
        return None
    attribute = c.one_of(("color", "shape", "size"))
    if attribute is not None:
        if not c.take("is"):
            return None
        ref = _reference(c)
        return ("attribute", ref, attribute) if ref is not None else None
    if not c.take("is"):
        return None
    r = _relation(c)
    landmark = _definite(c) if r is not None else None
    return ("what_relation", r, landmark) if landmark is not None else None


def _q_how_many(c: _Cursor):
    if not c.take("how", "many"):
        return None
    d = _desc(c, plural=True)
    return ("count", d) if d is not None and c.take("are", "there") else None


def _q_is(c: _Cursor):
    if not c.take("is"):
        return None
    if c.take("there"):
        d = _desc(c) if _article(c) else None
        return ("exists", d) if d is not None else None
    a = _definite(c)
    r = _relation(c) if a is not None else None
    b = _definite(c) if r is not None else None
    return ("relation", a, r, b) if b is not None else None


_PARSERS = {
    "grounding": [lambda c: (ref,) if (ref := _reference(c)) is not None else None],
    "ve": [_ve_there_is, _ve_there_are, _ve_subject],
    "vqa": [_q_what, _q_how_many, _q_is],
}


def parse(task: str, text: str, is_word: Callable[[str], bool] | None = None) -> tuple | None:
    """The logical form of ``text`` as a ``task`` text of the generator, or None if it is not one."""
    toks = read(text, is_word)
    return None if toks is None or task not in _PARSERS else _first(_PARSERS[task], toks)


# ---------------------------------------------------------------------------------------------------
# Evaluating on a scene, with the generator's rules
# ---------------------------------------------------------------------------------------------------


class _Scene:
    def __init__(self, objects: Sequence[syn.SceneObject], margin: float):
        self.objects, self.margin = list(objects), float(margin)

    def matching(self, d: syn.Desc) -> list[int]:
        return [i for i, o in enumerate(self.objects) if d.matches(o)]

    def unique(self, d: syn.Desc) -> int | None:
        hits = self.matching(d)
        return hits[0] if len(hits) == 1 else None

    def sep(self, a: int, b: int, relation: str) -> float:
        return syn.relation_separation(self.objects[a], self.objects[b], relation)

    def alone(self, t: int, d: syn.Desc, relation: str, landmark: int) -> bool:
        """``t`` is clearly ``relation`` the landmark and no other object matching ``d`` is on that side at all
        (the generator's rule for relational references)."""
        if self.sep(t, landmark, relation) < self.margin:
            return False
        return not any(self.sep(k, landmark, relation) > 0 for k in self.matching(d) if k not in (t, landmark))

    def resolve(self, ref: _Ref) -> int | None:
        if ref.relation is None:
            return self.unique(ref.desc)
        j = self.unique(ref.landmark)
        if j is None:
            return None
        hits = [t for t in self.matching(ref.desc) if t != j and self.alone(t, ref.desc, ref.relation, j)]
        return hits[0] if len(hits) == 1 else None

    def relation_truth(self, a: syn.Desc, relation: str, b: syn.Desc) -> str | None:
        i, j = self.unique(a), self.unique(b)
        if i is None or j is None or i == j:
            return None
        s = self.sep(i, j, relation)
        return "yes" if s >= self.margin else "no" if s <= -self.margin else None


def _ve_truth(scene: _Scene, form: tuple) -> str | None:
    kind = form[0]
    if kind == "exists":
        return "yes" if scene.matching(form[1]) else "no"
    if kind == "exists_maybe":
        return "maybe" if scene.matching(form[1]) else "no"
    if kind == "count":
        return "yes" if len(scene.matching(form[1])) == form[2] else "no"
    if kind == "attribute":
        i = scene.unique(form[1])
        return None if i is None else "yes" if getattr(scene.objects[i], form[2]) == form[3] else "no"
    if kind == "undecidable":
        return "maybe" if scene.unique(form[1]) is not None else None
    if kind == "relation":
        return scene.relation_truth(form[1], form[2], form[3])
    if kind == "depth":
        i, j = scene.unique(form[1]), scene.unique(form[2])
        return "maybe" if i is not None and j is not None and i != j else None
    return None


def _vqa_truth(scene: _Scene, form: tuple) -> str | None:
    kind = form[0]
    if kind == "attribute":
        i = scene.resolve(form[1])
        return None if i is None else getattr(scene.objects[i], form[2])
    if kind == "count":
        return str(len(scene.matching(form[1])))
    if kind == "exists":
        return "yes" if scene.matching(form[1]) else "no"
    if kind == "relation":
        return scene.relation_truth(form[1], form[2], form[3])
    if kind == "what_relation":
        j = scene.unique(form[2])
        if j is None:
            return None
        hits = [t for t in range(len(scene.objects)) if t != j and scene.alone(t, syn.Desc(), form[1], j)]
        return scene.objects[hits[0]].shape if len(hits) == 1 else None
    return None


def applies(sample: Sample) -> bool:
    """Whether the oracle can judge texts of this sample (a generated VE, VQA or grounding sample)."""
    meta = sample.meta or {}
    return meta.get("source") == "synthetic" and "scene" in meta and sample.task in ORACLE_TASKS


def _scene_of(sample: Sample, config: syn.SceneConfig | None) -> _Scene:
    objects = [syn.SceneObject(o["shape"], o["color"], o["size"], tuple(float(v) for v in o["box"]))
               for o in sample.meta["scene"]]
    config = config or syn.SceneConfig()
    size = sample.image.width if sample.image is not None else config.image_size
    return _Scene(objects, config.relation_margin * size)


class Oracle:
    """The ground truth of texts about one generated sample's scene.

    ``truth(text)``: VE label, VQA answer, or grounding target (the object's box), None when the text says
    nothing the scene decides. ``keeps_truth(text)``: the text's truth is the sample's own label.
    ``config``: the ``SceneConfig`` the sample came from, for the relation margin (default: the
    generator's; no recipe changes it); the margin is scaled to the sample's image size.
    """

    def __init__(self, sample: Sample, is_word: Callable[[str], bool] | None = None,
                 config: syn.SceneConfig | None = None):
        if not applies(sample):
            raise ValueError(f"sample {sample.uid}: not a generated VE/VQA/grounding sample")
        self.sample, self.is_word = sample, is_word
        self.scene = _scene_of(sample, config)

    def truth(self, text: str):
        form = parse(self.sample.task, text, self.is_word)
        if form is None:
            return None
        if self.sample.task == "ve":
            return _ve_truth(self.scene, form)
        if self.sample.task == "vqa":
            return _vqa_truth(self.scene, form)
        i = self.scene.resolve(form[0])
        return None if i is None else tuple(self.scene.objects[i].box)

    def expected(self):
        """The sample's own ground truth, in ``truth``'s terms."""
        s = self.sample
        if s.task == "grounding":
            return tuple(float(v) for v in s.box)
        return s.label

    def keeps_truth(self, text: str) -> bool:
        t = self.truth(text)
        return t is not None and t == self.expected()


__all__ = ["ORACLE_TASKS", "VARIANTS", "Oracle", "applies", "parse", "protected_vocabulary", "read", "vocabulary"]

"""Checks that a text-attack candidate still asks the same thing: a success must not be a relabelling.

A word-substitution attack that turns "is there a purple diamond?" into "is there a blue diamond?", or
"the large triangle" into "the small triangle", has changed the question, not fooled the model. Every
recipe therefore ends its constraints with ``components.ValidityGate`` over these checks (a candidate
failing one is never scored by the search, so it can never count as a success):

* ``oracle`` (generated benchmark only, applied automatically to samples with ``meta["source"] ==
  "synthetic"``): ``robustbench_ofa.data.synthetic_oracle`` re-derives the ground truth of the candidate
  from the sample's scene; a changed answer, or a text that no longer reads as a statement about the
  scene (an attribute or object word replaced by an unknown one: "the yellow infield", "what semblance
  is ..."), is rejected. Its typo reading asks WordNet whether a token is a real word.
* ``antonym`` (any data): no replaced word may be a WordNet antonym of the word it replaces, in either
  direction; for adjective satellites the antonyms of their head count too ("big" -> "small", "large"
  -> "tiny").
* ``cohyponym`` (any data): no replaced word may be a WordNet sister term of the word it replaces: two
  words, sharing no synset, with noun or verb senses under one direct hypernym ("red" -> "blue" through
  their colour nouns, "car" -> "truck"; not cousins such as "cat" -> "dog", under feline and canine).
  Such a swap keeps the sentence's form and changes what it asks, like an antonym. Words that are
  synonyms in some sense (share a synset) pass: PWWS's own candidates are synonyms in some sense, and
  whether it is the sentence's sense is another question (issue 32's word-sense check).
* ``protect`` (any data): words that may not change at all. By default, on the generated benchmark its
  attribute, object, relation, predicate and question vocabulary (``synthetic_oracle.protected_vocabulary``),
  and on every closed-answer task the words of the question that are themselves answers of the task's
  answer set ("is there a *red* shape?" where "red" is an answer: the word carries the answer).
  ``--protect w1,w2`` replaces the generated vocabulary and adds to the answer words; ``--protect none``
  protects nothing. A protected word counts as changed by any edit of its whitespace token (a typo, an
  invisible character, a deletion); inserting a word next to it does not.

Two more checks apply to the word-substitution recipes (``AttackSpec.substitutes_words``: PWWS,
TextFooler-GloVe, and co-attack's text stage with either), whose candidates are whole words from WordNet
or GloVe: on data the project did not generate they mostly destroyed the question (issue 32: "is there a
blue shape?" -> "is there a dismal shape?", "what shape is present?" -> "what forge is present?"). The
character-level recipes (DeepWordBug, Pruthi, Bad Characters) keep the words' sense by construction and
skip them.

* ``pos``: every replaced word keeps its coarse part of speech in the sentence (noun, verb, adjective,
  adverb; other tags exactly), as tagged by TextBlob's Pattern tagger in context (offline: its lexicon ships
  in the ``textblob`` package), and an auxiliary or modal verb keeps its lemma. Rejects "does" ->
  "exercise", "circle" -> "circulate", "does" -> "come".
* ``sense``: the candidate's all-MiniLM-L6-v2 embedding stays within cosine ``SENSE_MIN_COS`` of the
  original's, so a synonym in another sense of the word ("blue" -> "dismal", "have" -> "sustain") fails.
  The threshold is calibrated on the hand-labelled pairs of ``tests/data/text_validity_pairs.tsv``
  (``scripts/calibrate_text_validity.py``).

Checks are callables ``check(original, candidate) -> bool`` (True: keep) with a ``name``; a check that is
cheaper in batches (an encoder pass) also has ``many(original, candidates) -> list[bool]``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from attacks.text import encoder
from attacks.text.budget import edits
from attacks.text.resources import TextResources
from robustbench_ofa.data import synthetic_oracle
from robustbench_ofa.data.types import Sample

_EDGE = re.compile(r"^\W+|\W+$")


def norm_word(token: str) -> str:
    """A whitespace token as a bare lower-case word ("Diamond?" -> "diamond")."""
    return _EDGE.sub("", token.lower())


def wordnet(nltk_data: str):
    """NLTK's WordNet (``nltk.corpus.wordnet``, the reader PWWS's synonyms come from, so it loads once) on the
    installed resource folder."""
    import nltk

    if nltk_data not in nltk.data.path:  # NLTK reads only below its data path
        nltk.data.path.insert(0, nltk_data)
    from nltk.corpus import wordnet as wn

    return wn


@functools.lru_cache(maxsize=2)
def stopwords(nltk_data: str) -> frozenset[str]:
    return frozenset((Path(nltk_data) / "corpora" / "stopwords" / "english").read_text().split())


class Lexicon:
    """WordNet look-ups shared by the checks: antonyms, and whether a token is an English word."""

    def __init__(self, nltk_data: str):
        self.wn = wordnet(nltk_data)
        self.stop = stopwords(nltk_data)
        self.antonyms = functools.lru_cache(maxsize=8192)(self._antonyms)
        self.is_word = functools.lru_cache(maxsize=8192)(self._is_word)
        self.senses = functools.lru_cache(maxsize=8192)(self._senses)
        self.bases = functools.lru_cache(maxsize=8192)(self._bases)

    def _antonyms(self, word: str) -> frozenset[str]:
        out: set[str] = set()
        for s in self.wn.synsets(word):
            lemmas = [lem for lem in s.lemmas() if lem.name().lower() == word] or list(s.lemmas())
            if s.pos() == "s":  # a satellite: its head adjective's antonyms are its (indirect) antonyms
                lemmas += [lem for head in s.similar_tos() for lem in head.lemmas()]
            for lem in lemmas:
                for ant in lem.antonyms():
                    out.update(n.lower().replace("_", " ") for n in ant.synset().lemma_names())
        out.discard(word)
        return frozenset(out)

    def _senses(self, word: str) -> tuple[frozenset[str], frozenset[str]]:
        """(the word's synsets, the direct hypernyms of its noun and verb senses), as synset names."""
        synsets = self.wn.synsets(word)
        parents = {h.name() for s in synsets if s.pos() in ("n", "v")
                   for h in s.hypernyms() + s.instance_hypernyms()}
        return frozenset(s.name() for s in synsets), frozenset(parents)

    def are_cohyponyms(self, a: str, b: str) -> bool:
        """Sister terms: no shared synset, and a noun or verb sense of each under one direct hypernym."""
        a, b = norm_word(a), norm_word(b)
        if not a or not b or a == b:
            return False
        (syn_a, up_a), (syn_b, up_b) = self.senses(a), self.senses(b)
        return not (syn_a & syn_b) and bool(up_a & up_b)

    def _is_word(self, token: str) -> bool:
        return token in self.stop or bool(self.wn.synsets(token))

    def _bases(self, word: str) -> frozenset[str]:
        """The word and every WordNet base form of it ("larger" -> "large", "running" -> "run"; all of them:
        ``morphy`` returns only the first, and "larger" is a lemma of its own)."""
        forms = getattr(self.wn, "_morphy", None)
        out = {word}
        for pos in "nvar":
            out.update(forms(word, pos) if forms else [b for b in [self.wn.morphy(word, pos)] if b])
        return frozenset(out)

    def are_antonyms(self, a: str, b: str) -> bool:
        """Antonyms in either direction, inflections included ("smaller" -> "larger": the antonyms of
        "smaller" are those of "small", so "larger" is compared by its base "large")."""
        a, b = norm_word(a), norm_word(b)
        if not a or not b or a == b:
            return False
        return bool(self.bases(b) & self.antonyms(a)) or bool(self.bases(a) & self.antonyms(b))


@functools.lru_cache(maxsize=2)
def lexicon(res: TextResources) -> Lexicon:
    """One ``Lexicon`` per resource folder (its caches serve every sample)."""
    return Lexicon(str(res.nltk_data))


class WordPairCheck:
    """Rejects a candidate that replaces a word by one standing in ``relation`` to it (``are_antonyms``,
    ``are_cohyponyms``): one class, since the checks differ only in the relation."""

    def __init__(self, name: str, relation: Callable[[str, str], bool]):
        self.name = name
        self.relation = relation

    def __call__(self, original: str, candidate: str) -> bool:
        for old, new in edits(original, candidate):
            if any(self.relation(a, b) for a in old for b in new):
                return False
        return True


class ProtectCheck:
    name = "protect"

    def __init__(self, words: Iterable[str]):
        self.words = frozenset(norm_word(w) for w in words)

    def __call__(self, original: str, candidate: str) -> bool:
        return not any(norm_word(w) in self.words for old, _ in edits(original, candidate) for w in old)


class OracleCheck:
    name = "oracle"

    def __init__(self, sample: Sample, lexicon: Lexicon | None = None):
        self.oracle = synthetic_oracle.Oracle(sample, is_word=lexicon.is_word if lexicon else None)

    def __call__(self, original: str, candidate: str) -> bool:
        return self.oracle.keeps_truth(candidate)


#: Coarse classes of the Penn tags (the universal tagset's NOUN, VERB, ADJ, ADV): "running" -> "run" keeps
#: a verb a verb; any other tag must match exactly ("near" IN -> "most" JJS fails).
_COARSE = (("NN", "noun"), ("VB", "verb"), ("MD", "verb"), ("JJ", "adj"), ("RB", "adv"))
_PUNCT = re.compile(r"^(\W*)(.*?)(\W*)$")


def coarse_tag(tag: str) -> str:
    return next((name for prefix, name in _COARSE if tag.startswith(prefix)), tag)


@functools.lru_cache(maxsize=1)
def _pattern_tag():
    from textblob.en import tag

    return tag


@functools.lru_cache(maxsize=4096)
def pos_tags(text: str) -> tuple[str, ...]:
    """The coarse part of speech of each whitespace token of ``text``, tagged in context. The tokens are
    split from their punctuation here and handed to the tagger as they are, so tag i is token i's."""
    pieces, owner = [], []
    for i, token in enumerate(text.split()):
        lead, core, trail = _PUNCT.match(token).groups()
        for part, mine in ((lead, False), (core, True), (trail, False)):
            if part:
                pieces.append(part)
                owner.append(i if mine else -1)
    tags = ["" for _ in text.split()]
    tagged = _pattern_tag()(" ".join(pieces), tokenize=False)
    for (_, tag), i in zip(tagged, owner):
        if i >= 0:
            tags[i] = coarse_tag(tag)
    return tuple(tags)


#: Auxiliary and modal verbs by lemma: they set the form of the question ("does the image contain a
#: star?"), so one may only change its inflection ("does" -> "do"), never its lemma: a verb for a verb is
#: the same part of speech, but "come the image contain a star?" (PWWS, on hand-written questions) is no
#: longer a question, and "can the image contain a square?" asks something else.
AUXILIARIES = {**dict.fromkeys(("be", "am", "is", "are", "was", "were", "been", "being"), "be"),
               **dict.fromkeys(("do", "does", "did", "done", "doing"), "do"),
               **dict.fromkeys(("have", "has", "had", "having"), "have"),
               **{m: m for m in ("can", "could", "may", "might", "must", "shall", "should", "will", "would")}}


class PosCheck:
    """A replaced word keeps its coarse part of speech in the sentence (TextFooler's POS constraint, with
    TextBlob's offline Pattern tagger; ``tests/data/pos_tagged.txt`` measures it on hand-tagged text), and
    an auxiliary or modal verb keeps its lemma (``AUXILIARIES``)."""

    name = "pos"

    def __call__(self, original: str, candidate: str) -> bool:
        old, new = original.split(), candidate.split()
        if len(old) != len(new):  # an insertion or deletion is no word substitution
            return True
        changed = [i for i, (a, b) in enumerate(zip(old, new)) if a != b]
        if not changed:
            return True
        for i in changed:
            aux = AUXILIARIES.get(norm_word(old[i]))
            if aux is not None and AUXILIARIES.get(norm_word(new[i])) != aux:
                return False
        before, after = pos_tags(original), pos_tags(candidate)
        return all(before[i] == after[i] for i in changed)


#: Cosine floor of the word-sense check (all-MiniLM-L6-v2, whole text against the original). Calibrated on
#: ``tests/data/text_validity_pairs.tsv`` by ``scripts/calibrate_text_validity.py`` (see its docstring
#: and README "Text attacks that keep the question"): the lowest threshold of a 0.01 grid at which the changed
#: pairs let through by all the checks stay at most 5 % on each half of the pairs (``calibration.calibrate``).
SENSE_MIN_COS = 0.88


class SenseCheck:
    """The candidate stays within ``threshold`` cosine of the original (a synonym in another sense, or a
    word that no longer fits, moves the sentence's embedding). Batched: one encoder pass per search step."""

    name = "sense"

    def __init__(self, minilm: str, threshold: float = SENSE_MIN_COS):
        self.minilm = minilm
        self.threshold = float(threshold)
        self._reference: tuple[str, object] | None = None

    def many(self, original: str, candidates: Sequence[str]) -> list[bool]:
        if not candidates:
            return []
        if self._reference is None or self._reference[0] != original:
            self._reference = (original, encoder.encode(self.minilm, [original])[0])
        cos = encoder.encode(self.minilm, candidates) @ self._reference[1]
        return [c >= self.threshold or a == original for c, a in zip(cos.tolist(), candidates)]

    def __call__(self, original: str, candidate: str) -> bool:
        return self.many(original, [candidate])[0]


def answer_words(answers: Iterable[str]) -> frozenset[str]:
    """The single-word answers of a closed answer set, as bare lower-case words: a question word that is
    itself an answer carries the answer ("is there a red shape?"), so no text attack may change it."""
    return frozenset(w for w in (norm_word(a) for a in answers) if w and len(w.split()) == 1)


def protected_words(sample: Sample, protect: Sequence[str] | None,
                    answers: frozenset[str] = frozenset()) -> frozenset[str]:
    """The words no candidate may change for this sample: ``protect`` if given, else the generated
    benchmark's vocabulary on its samples and nothing elsewhere; plus ``answers`` (``answer_words`` of the
    task's closed answer set, computed once per run) unless ``protect`` is empty (``--protect none``:
    nothing at all)."""
    if protect is not None and not protect:
        return frozenset()
    if protect is not None:
        words = frozenset(norm_word(w) for w in protect)
    elif (sample.meta or {}).get("source") == "synthetic":
        words = synthetic_oracle.protected_vocabulary()
    else:
        words = frozenset()
    return words | answers


def checks_for(sample: Sample, protect: Sequence[str] | None, res: TextResources,
               answers: frozenset[str] = frozenset(), substitutes_words: bool = False) -> list:
    """The checks of one sample, in the order a rejection is attributed: oracle, antonym, cohyponym,
    protect, and for a word-substitution recipe (``substitutes_words``) pos and sense (the encoder pass
    last: it sees only what the cheaper checks kept). ``answers``: ``answer_words`` of the task's closed
    answer set (empty for open-ended tasks)."""
    lex = lexicon(res)
    out: list = []
    if synthetic_oracle.applies(sample):
        out.append(OracleCheck(sample, lex))
    out += [WordPairCheck("antonym", lex.are_antonyms), WordPairCheck("cohyponym", lex.are_cohyponyms)]
    words = protected_words(sample, protect, answers)
    if words:
        out.append(ProtectCheck(words))
    if substitutes_words:
        out += [PosCheck(), SenseCheck(str(res.minilm))]
    return out

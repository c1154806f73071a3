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

Part-of-speech consistency (TextFooler's and BAE's POS constraint) is *not* applied: no offline tagger is
available here (the resources hold no NLTK tagger model, and flair's taggers download from a model hub
at first use), and a POS check without a tagger would be a guess. WordNet synonyms (``pwws``) share a
synset, hence a part of speech, by construction; GloVe neighbours (``textfooler-glove``) do not.

Checks are callables ``check(original, candidate) -> bool`` (True: keep) with a ``name``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

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

    def are_antonyms(self, a: str, b: str) -> bool:
        a, b = norm_word(a), norm_word(b)
        return bool(a) and bool(b) and a != b and (b in self.antonyms(a) or a in self.antonyms(b))


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
               answers: frozenset[str] = frozenset()) -> list:
    """The checks of one sample, in the order a rejection is attributed: oracle, antonym, cohyponym,
    protect. ``answers``: ``answer_words`` of the task's closed answer set (empty for open-ended tasks)."""
    lex = lexicon(res)
    out: list = []
    if synthetic_oracle.applies(sample):
        out.append(OracleCheck(sample, lex))
    out += [WordPairCheck("antonym", lex.are_antonyms), WordPairCheck("cohyponym", lex.are_cohyponyms)]
    words = protected_words(sample, protect, answers)
    if words:
        out.append(ProtectCheck(words))
    return out

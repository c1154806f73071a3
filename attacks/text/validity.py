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
  -> "tiny"). Co-hyponyms ("purple" -> "blue") are not antonyms: on the generated benchmark the oracle
  and ``protect`` catch them, elsewhere ``--protect`` is the tool.
* ``protect`` (any data): words that may not change at all (``--protect``; default on the generated
  benchmark: its attribute, object, relation, predicate and question vocabulary,
  ``synthetic_oracle.protected_vocabulary``). A protected word counts as changed by any edit of its
  whitespace token (a typo, an invisible character, a deletion); inserting a word next to it does not.

Part-of-speech consistency (TextFooler's and BAE's POS constraint) is *not* applied: no offline tagger is
available here (the resources hold no NLTK tagger model, and flair's taggers download from a model hub
at first use), and a POS check without a tagger would be a guess. WordNet synonyms (``pwws``) share a
synset, hence a part of speech, by construction; GloVe neighbours (``textfooler-glove``) do not.

Checks are callables ``check(original, candidate) -> bool`` (True: keep) with a ``name``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
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

    def _is_word(self, token: str) -> bool:
        return token in self.stop or bool(self.wn.synsets(token))

    def are_antonyms(self, a: str, b: str) -> bool:
        a, b = norm_word(a), norm_word(b)
        return bool(a) and bool(b) and a != b and (b in self.antonyms(a) or a in self.antonyms(b))


@functools.lru_cache(maxsize=2)
def lexicon(res: TextResources) -> Lexicon:
    """One ``Lexicon`` per resource folder (its caches serve every sample)."""
    return Lexicon(str(res.nltk_data))


class AntonymCheck:
    name = "antonym"

    def __init__(self, lexicon: Lexicon):
        self.lexicon = lexicon

    def __call__(self, original: str, candidate: str) -> bool:
        for old, new in edits(original, candidate):
            if any(self.lexicon.are_antonyms(a, b) for a in old for b in new):
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


def protected_words(sample: Sample, protect: Sequence[str] | None) -> frozenset[str]:
    """The words no candidate may change for this sample: ``protect`` if given, else the generated
    benchmark's vocabulary on its samples and nothing elsewhere."""
    if protect is not None:
        return frozenset(norm_word(w) for w in protect)
    if (sample.meta or {}).get("source") == "synthetic":
        return synthetic_oracle.protected_vocabulary()
    return frozenset()


def checks_for(sample: Sample, protect: Sequence[str] | None, res: TextResources) -> list:
    """The checks of one sample, in the order a rejection is attributed: oracle, antonym, protect."""
    lex = lexicon(res)
    out: list = []
    if synthetic_oracle.applies(sample):
        out.append(OracleCheck(sample, lex))
    out.append(AntonymCheck(lex))
    words = protected_words(sample, protect)
    if words:
        out.append(ProtectCheck(words))
    return out

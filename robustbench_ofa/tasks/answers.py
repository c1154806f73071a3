"""Answer sets of closed-answer tasks with an open vocabulary (VQA): read from a file or built from data.

Why not one fixed list: the generated benchmark's answers are a few dozen words, while VQAv2 has 3,129
candidate answers and a user's manifest may hold any (``umbrella``, ``2 people``). A variant is tuned
with one answer set and must be evaluated with exactly that set, so the set is stored with the variant
(``answers-<task>.json`` next to its card, named in ``card.answers``).

Files (``--answers FILE``):

* ``.txt``: one answer per line (blank lines ignored);
* ``.json``: a list of strings, or OFA's ``{answer: index}`` mapping (ordered by index);
* ``.pkl``: OFA's ``trainval_ans2label.pkl`` (``{answer: index}``), read by an unpickler that refuses every
  global, so only plain dicts, strings and integers can come out of it, never code.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.io import atomic_write_text

#: OFA's VQAv2 answer vocabulary size (``trainval_ans2label.pkl``): the default cap of a built set.
MAX_ANSWERS = 3129


class _PlainUnpickler(pickle.Unpickler):
    """Builds only what pickle's opcodes make by themselves (dicts, lists, strings, numbers)."""

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle's hook
        raise pickle.UnpicklingError(f"refusing the global {module}.{name}: an answer file holds plain data only")


def _from_mapping(obj: dict, path: Path) -> list[str]:
    if not all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in obj.items()):
        raise RobustOFAError(f"{path}: expected a mapping of answer strings to integer indices")
    if sorted(obj.values()) != list(range(len(obj))):
        raise RobustOFAError(f"{path}: the answer indices must be 0..{len(obj) - 1}, each once")
    return [a for a, _ in sorted(obj.items(), key=lambda kv: kv[1])]


def load_answers(path: str | Path) -> list[str]:
    """An answer list from a .txt, .json or .pkl file (module doc); one clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise RobustOFAError(f"--answers {path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".txt":
            answers = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        elif suffix == ".json":
            obj = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(obj, dict):
                answers = _from_mapping(obj, path)
            elif isinstance(obj, list) and all(isinstance(a, str) for a in obj):
                answers = [a.strip() for a in obj]
            else:
                raise RobustOFAError(f"{path}: expected a JSON list of answer strings or a mapping answer -> index")
        elif suffix in (".pkl", ".pickle"):
            obj = _PlainUnpickler(io.BytesIO(path.read_bytes())).load()
            if not isinstance(obj, dict):
                raise RobustOFAError(f"{path}: expected a pickled mapping answer -> index, got {type(obj).__name__}")
            answers = _from_mapping(obj, path)
        else:
            raise RobustOFAError(f"--answers {path}: expected a .txt, .json or .pkl file")
    except (UnicodeDecodeError, json.JSONDecodeError, pickle.UnpicklingError, EOFError) as exc:
        raise RobustOFAError(f"{path}: not a readable answer file ({exc})") from None
    check_answers(answers, str(path))
    return answers


def check_answers(answers: Sequence[str], where: str) -> None:
    if not answers or any(not a for a in answers):
        raise RobustOFAError(f"{where}: expected at least one answer and no empty ones")
    dup = [a for a, n in Counter(answers).items() if n > 1]
    if dup:
        raise RobustOFAError(f"{where}: answer {dup[0]!r} is listed twice")


def sample_answers(sample) -> list[str]:
    """The answers a sample counts as right (its human answers, else its single answer)."""
    return list(sample.answers or ([sample.label] if sample.label else []))


def answers_from_samples(samples: Iterable, max_answers: int = MAX_ANSWERS) -> list[str]:
    """The ``max_answers`` most frequent answers of the training data (OFA builds its VQAv2 set so), each
    human answer of a sample counting once; ties by first appearance, so the set is reproducible."""
    if max_answers < 1:
        raise RobustOFAError(f"--max-answers: expected a positive count, got {max_answers}")
    counts: Counter[str] = Counter()
    for s in samples:
        counts.update(list(dict.fromkeys(a.strip() for a in sample_answers(s) if a.strip())))
    if not counts:
        raise RobustOFAError("the training data holds no answers to build an answer set from")
    return [a for a, _ in counts.most_common(max_answers)]


def answers_file(task: str) -> str:
    return f"answers-{task}.json"


def write_answers(folder: str | Path, task: str, answers: Sequence[str]) -> dict:
    """Store a variant's answer set; returns its card entry (file, count, SHA-256 of the file)."""
    text = json.dumps(list(answers), indent=0, ensure_ascii=False) + "\n"
    atomic_write_text(Path(folder) / answers_file(task), text)
    return {"file": answers_file(task), "n": len(answers), "sha256": hashlib.sha256(text.encode()).hexdigest()}


def read_variant_answers(card: dict, task: str) -> list[str] | None:
    """The answer set a variant was tuned with (None: it stored none, the task's default applies)."""
    entry = (card.get("answers") or {}).get(task)
    if not entry:
        return None
    path = Path(card.get("path") or ".") / entry["file"]
    if not path.is_file():
        raise RobustOFAError(f"{card.get('name', '?')}: its card names the answer set {path}, which is missing")
    data = path.read_bytes()
    if entry.get("sha256") and hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise RobustOFAError(f"{path}: the answer set changed since the variant was tuned (SHA-256 differs)")
    return load_answers(path)

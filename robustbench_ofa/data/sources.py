"""Data-source specs: one string names where a task's samples come from (CLI ``--data``, zoo cards).

Grammar (checked before any file is opened, with a one-line error naming the spec)::

    synthetic:SPLIT[:N]        generated benchmark split (train, val, test, downstream_train, ...)
    tsv:PATH[:FORMAT]          one of OFA's TSV files; FORMAT = refcoco | snli_ve | vqa | caption
    manifest:PATH              a JSONL manifest
    PATH                       by extension: .tsv -> tsv, .jsonl / .json -> manifest

Why strings: the same spec goes into metrics logs, zoo cards and ablation tables, so a result always
records exactly which data it was computed on, and the train and evaluate commands parse it alike.
A ``TASK=SPEC`` form (``parse_task_sources``) assigns different files to the tasks of a multi-task run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from robustbench_ofa.data.types import Sample
from robustbench_ofa.errors import RobustOFAError
from robustbench_ofa.tasks import canonical_task, is_task_name, task_names

KINDS = ("synthetic", "tsv", "manifest")
#: Samples drawn from a synthetic split when neither the spec nor the caller gives a count.
DEFAULT_SYNTHETIC_N = 256


@dataclass(frozen=True)
class DataSource:
    """A parsed spec: ``kind`` plus a split (synthetic) or a path, an optional TSV format and count."""

    kind: str
    location: str
    fmt: str | None = None
    n: int | None = None

    def __str__(self) -> str:
        parts = [self.kind, self.location]
        if self.fmt is not None:
            parts.append(self.fmt)
        if self.n is not None:
            parts.append(str(self.n))
        return ":".join(parts)

    def load(self, task: str, limit: int | None = None, *, scene=None, seed: int = 0) -> list[Sample]:
        """The samples of ``task`` (at most ``limit``; for synthetic data exactly that many).

        ``scene`` is the ``SceneConfig`` of generated data (its image size, difficulty and seed);
        ``seed`` the generator's sample seed.
        """
        if task not in task_names():
            raise RobustOFAError(f"unknown task '{task}': expected one of {', '.join(task_names())}")
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise RobustOFAError(f"data source '{self}': limit must be a non-negative integer, got {limit!r}")
        if self.kind == "synthetic":
            from robustbench_ofa.data.synthetic import generate

            n = limit if limit is not None else (self.n if self.n is not None else DEFAULT_SYNTHETIC_N)
            if self.n is not None and limit is not None:
                n = min(self.n, limit)
            return generate(task, self.location, n, scene, seed)
        if self.kind == "tsv":
            from robustbench_ofa.data.tsv import read_tsv

            return list(read_tsv(self.location, task, self.fmt, _cap(self.n, limit)))
        from robustbench_ofa.data.manifest import read_manifest

        return list(read_manifest(self.location, task, _cap(self.n, limit)))


def _cap(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def _count(text: str, spec: str) -> int:
    if not text.isdigit():
        raise RobustOFAError(f"data source '{spec}': sample count must be a non-negative integer, got '{text}'")
    return int(text)


def parse_source(spec: str) -> DataSource:
    """Parse one spec string (see the module docstring); paths are not opened yet."""
    from robustbench_ofa.data.synthetic import SPLITS
    from robustbench_ofa.data.tsv import LAYOUTS

    if not isinstance(spec, str) or not spec.strip():
        raise RobustOFAError("data source: empty spec; expected synthetic:SPLIT, tsv:PATH[:FORMAT] or manifest:PATH")
    spec = spec.strip()
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in KINDS:
        suffix = Path(spec).suffix.lower()
        if suffix == ".tsv":
            return DataSource("tsv", spec)
        if suffix in (".jsonl", ".json"):
            return DataSource("manifest", spec)
        raise RobustOFAError(
            f"data source '{spec}': unknown kind '{kind if sep else spec}'; expected synthetic:SPLIT, "
            "tsv:PATH[:FORMAT], manifest:PATH, or a .tsv/.jsonl path"
        )
    if not rest:
        what = "split" if kind == "synthetic" else "path"
        raise RobustOFAError(f"data source '{spec}': missing {what} after '{kind}:'")
    if kind == "synthetic":
        split, _, count = rest.partition(":")
        if split not in SPLITS:
            raise RobustOFAError(f"data source '{spec}': unknown synthetic split '{split}'; "
                                 f"expected one of {', '.join(SPLITS)}")
        return DataSource("synthetic", split, None, _count(count, spec) if count else None)
    if kind == "tsv":
        path, fmt = rest, None
        head, sep2, tail = rest.rpartition(":")
        if sep2 and tail in LAYOUTS:
            path, fmt = head, tail
        elif sep2 and tail and "/" not in tail and "\\" not in tail and "." not in tail and head:
            raise RobustOFAError(f"data source '{spec}': unknown TSV format '{tail}'; "
                                 f"expected one of {', '.join(LAYOUTS)}")
        if not path:
            raise RobustOFAError(f"data source '{spec}': missing path after 'tsv:'")
        return DataSource("tsv", path, fmt)
    return DataSource("manifest", rest)


def load_samples(spec: str | DataSource, task: str, limit: int | None = None, *, scene=None,
                 seed: int = 0) -> list[Sample]:
    """Parse ``spec`` (if a string) and load ``task``'s samples from it."""
    source = spec if isinstance(spec, DataSource) else parse_source(spec)
    return source.load(task, limit, scene=scene, seed=seed)


def parse_task_sources(specs: Iterable[str], tasks: Sequence[str]) -> dict[str, DataSource]:
    """``[TASK=]SPEC`` strings -> one source per task; an unprefixed spec applies to every task not named.

    ``ve=tsv:snli_ve_train.tsv`` names one task's file; ``synthetic:downstream_train`` serves all tasks.
    Every task must end up with exactly one source.
    """
    shared: DataSource | None = None
    named: dict[str, DataSource] = {}
    for raw in specs:
        head, sep, tail = raw.partition("=")
        if sep and _is_task_name(head):
            task = canonical_task(head)
            if task not in tasks:
                raise RobustOFAError(f"data source '{raw}': task '{task}' is not one of the run's tasks "
                                     f"({', '.join(tasks)})")
            if task in named:
                raise RobustOFAError(f"data source '{raw}': task '{task}' was given two sources")
            named[task] = parse_source(tail)
        else:
            if shared is not None:
                raise RobustOFAError(f"data source '{raw}': only one source may omit the TASK= prefix")
            shared = parse_source(raw)
    out: dict[str, DataSource] = {}
    for task in tasks:
        source = named.get(task, shared)
        if source is None:
            raise RobustOFAError(f"no data source for task '{task}'; pass --data {task}=SPEC or an unprefixed SPEC")
        out[task] = source
    return out


def _is_task_name(text: str) -> bool:
    return is_task_name(text)

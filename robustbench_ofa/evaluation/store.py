"""The results store: one SQLite database per output directory, a row per (sample, variant, attack, eps).

Rows are written one batch per transaction, so a killed run leaves only whole batches behind and a
rerun of the same command continues with the first missing batch. The run's defining settings are
stored too; reopening a directory with different settings is refused rather than mixing two runs.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from robustbench_ofa.errors import RobustOFAError

#: The database's file name inside an output folder.
STORE_FILE = "results.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS clean (
    variant TEXT, task TEXT, uid TEXT, pred TEXT, score REAL, correct INTEGER, seconds REAL,
    PRIMARY KEY (variant, task, uid));
CREATE TABLE IF NOT EXISTS results (
    variant TEXT, task TEXT, attack TEXT, norm TEXT, eps_label TEXT, eps REAL, uid TEXT, status TEXT,
    clean_pred TEXT, adv_pred TEXT, clean_correct INTEGER, adv_correct INTEGER,
    clean_score REAL, adv_score REAL, linf REAL, l2 REAL, grad_evals INTEGER, queries INTEGER,
    seconds REAL, first_grad REAL,
    PRIMARY KEY (variant, task, attack, norm, eps_label, uid));
CREATE TABLE IF NOT EXISTS transfer (
    source TEXT, target TEXT, task TEXT, attack TEXT, eps_label TEXT, uid TEXT,
    target_clean_correct INTEGER, adv_correct INTEGER,
    PRIMARY KEY (source, target, task, attack, eps_label, uid));
CREATE TABLE IF NOT EXISTS checks (
    variant TEXT, task TEXT, name TEXT, value REAL, detail TEXT, PRIMARY KEY (variant, task, name));
CREATE TABLE IF NOT EXISTS examples (
    variant TEXT, task TEXT, attack TEXT, eps_label TEXT, uid TEXT, kind TEXT, png BLOB, text TEXT,
    PRIMARY KEY (variant, task, attack, eps_label, uid, kind));
CREATE TABLE IF NOT EXISTS samples (
    task TEXT, uid TEXT, text TEXT, reference TEXT, width INTEGER, height INTEGER,
    PRIMARY KEY (task, uid));
"""

#: Columns added after the first release, with their types: added to an older database on open
#: (ALTER TABLE ... ADD COLUMN), NULL on its rows and on image-attack rows. ``words`` is a text attack's
#: budget (words it may change), ``adv_text`` its adversarial free text, ``words_changed``/``n_words`` what it
#: changed out of how many words, ``rejected_successes`` how many candidates the label-keeping checks rejected
#: that the model would have got wrong (``attacks.text.validity``; NULL on rows of older runs),
#: ``valid_candidates`` how many candidates passed every check (0: nothing valid to try),
#: ``rejected_candidates`` the candidates each check rejected (JSON: check name -> count).
ADDED_RESULT_COLUMNS = (("words", "INTEGER"), ("adv_text", "TEXT"), ("words_changed", "INTEGER"),
                        ("n_words", "INTEGER"), ("rejected_successes", "INTEGER"), ("valid_candidates", "INTEGER"),
                        ("rejected_candidates", "TEXT"))
#: Sample columns added later: ``label`` (a closed-answer task's reference answer) and ``decided_by``
#: ("text" or "image": what can decide the answer, where the data knows, e.g. the generated benchmark).
ADDED_SAMPLE_COLUMNS = (("label", "TEXT"), ("decided_by", "TEXT"))
SAMPLE_COLUMNS = ("task", "uid", "text", "reference", "width", "height", *(c for c, _ in ADDED_SAMPLE_COLUMNS))
RESULT_COLUMNS = ("variant", "task", "attack", "norm", "eps_label", "eps", "uid", "status", "clean_pred",
                  "adv_pred", "clean_correct", "adv_correct", "clean_score", "adv_score", "linf", "l2",
                  "grad_evals", "queries", "seconds", "first_grad", *(c for c, _ in ADDED_RESULT_COLUMNS))


class ResultsStore:
    """SQLite-backed per-sample results of one evaluation run."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RobustOFAError(f"{self.path.parent}: cannot create the results folder ({exc.strerror})") from None
        if os.path.isdir(self.path):
            raise RobustOFAError(f"{self.path}: is a folder, not a robust-ofa results database")
        if os.path.exists(self.path) and not os.access(self.path, os.R_OK):
            raise RobustOFAError(f"{self.path}: permission denied (cannot read the results database)")
        try:
            self.db = sqlite3.connect(str(self.path))
            self.db.executescript(SCHEMA)
            self._migrate()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and not os.access(self.path.parent, os.W_OK | os.X_OK):
                raise RobustOFAError(f"{self.path}: permission denied (cannot write in {self.path.parent}: {exc})") from None
            raise RobustOFAError(f"{self.path}: not a robust-ofa results database ({exc})") from None

    @classmethod
    def replica(cls, path: str | Path, image: bytes) -> ResultsStore:
        """An in-memory copy of a store (``snapshot()`` of rank 0's file) for the other ranks of a
        torchrun job: they read cascade/resume state from it and write every gathered batch into it."""
        self = cls.__new__(cls)
        self.path = Path(path)
        self.db = sqlite3.connect(":memory:")
        self.db.deserialize(image)
        return self

    def snapshot(self) -> bytes:
        """The whole database as bytes (what ``replica`` rebuilds)."""
        return self.db.serialize()

    def _migrate(self) -> None:
        with self.db:
            for table, added in (("results", ADDED_RESULT_COLUMNS), ("samples", ADDED_SAMPLE_COLUMNS)):
                have = {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}
                for name, kind in added:
                    if name not in have:
                        self.db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")

    # -- run identity ------------------------------------------------------------------------------
    def bind(self, settings: dict[str, Any]) -> None:
        """Record the run's settings, or check they equal the stored ones (resume)."""
        text = json.dumps(settings, sort_keys=True)
        row = self.db.execute("SELECT value FROM meta WHERE key='settings'").fetchone()
        if row is None:
            with self.db:
                self.db.execute("INSERT INTO meta VALUES ('settings', ?)", (text,))
            return
        stored = json.loads(row[0])
        if stored != json.loads(text):
            diff = sorted(k for k in set(stored) | set(settings) if stored.get(k) != settings.get(k))
            raise RobustOFAError(
                f"{self.path}: holds a different run (setting '{diff[0]}' differs: stored "
                f"{stored.get(diff[0])!r}, now {settings.get(diff[0])!r}); use another --out or delete it"
            )

    def bind_weights(self, name: str, hashes: dict[str, str] | None) -> None:
        """Record a model's weight hashes, or check a resumed run still evaluates the same weights.

        Why: the settings name models (``embedded-finetune``), not weights; a rebuilt zoo or a retrained
        checkpoint under the same name would otherwise be resumed into the old run's numbers.
        """
        if not hashes:
            return
        key = f"weights:{name}"
        stored = self.get_meta(key)
        if stored is None:
            self.set_meta(key, hashes)
        elif stored != hashes:
            part = next(k for k in sorted(set(stored) | set(hashes)) if stored.get(k) != hashes.get(k))
            then, now = (str(h.get(part, "none"))[:12] for h in (stored, hashes))
            raise RobustOFAError(
                f"{self.path}: model '{name}' has other weights than the run stored here ({part} sha256 "
                f"{then}... then, {now}... now); use another --out or delete it"
            )

    def settings(self) -> dict:
        row = self.db.execute("SELECT value FROM meta WHERE key='settings'").fetchone()
        return json.loads(row[0]) if row else {}

    def set_meta(self, key: str, value: Any) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    # -- writes (one transaction per batch) ---------------------------------------------------------
    def add_clean(self, rows: Iterable[Sequence]) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO clean VALUES (?,?,?,?,?,?,?)", list(rows))

    def add_results(self, rows: Iterable[dict], examples: Iterable[Sequence] = ()) -> None:
        cols = ",".join(RESULT_COLUMNS)
        marks = ",".join("?" * len(RESULT_COLUMNS))
        with self.db:
            self.db.executemany(f"INSERT OR REPLACE INTO results ({cols}) VALUES ({marks})",
                                [tuple(r.get(c) for c in RESULT_COLUMNS) for r in rows])
            self.db.executemany("INSERT OR REPLACE INTO examples VALUES (?,?,?,?,?,?,?,?)", list(examples))

    def add_transfer(self, rows: Iterable[Sequence]) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO transfer VALUES (?,?,?,?,?,?,?,?)", list(rows))

    def add_samples(self, rows: Iterable[Sequence]) -> None:
        """Sample inputs shown in reports: (task, uid, text, reference, width, height[, label, decided_by]).

        ``text`` is the question/expression/hypothesis, ``reference`` the expected answer as text (a
        grounding box as JSON ``[x0, y0, x1, y1]`` in original-image pixels), ``width``/``height`` the
        original image size (reports scale boxes onto the stored, resized example images); ``label`` and
        ``decided_by`` feed the per-label and text-/image-decided breakdowns (None where unknown).
        """
        rows = [tuple(r) + (None,) * (len(SAMPLE_COLUMNS) - len(r)) for r in rows]
        marks = ",".join("?" * len(SAMPLE_COLUMNS))
        with self.db:
            self.db.executemany(f"INSERT OR REPLACE INTO samples ({','.join(SAMPLE_COLUMNS)}) VALUES ({marks})", rows)

    def add_check(self, variant: str, task: str, name: str, value: float, detail: str = "") -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO checks VALUES (?,?,?,?,?)", (variant, task, name, value, detail))

    # -- reads -------------------------------------------------------------------------------------
    def clean_rows(self, variant: str, task: str) -> dict[str, tuple]:
        cur = self.db.execute("SELECT uid, pred, score, correct FROM clean WHERE variant=? AND task=?",
                              (variant, task))
        return {r[0]: r[1:] for r in cur}

    def done_uids(self, variant: str, task: str, attack: str, norm: str, eps_label: str) -> set[str]:
        cur = self.db.execute("SELECT uid FROM results WHERE variant=? AND task=? AND attack=? AND norm=? "
                              "AND eps_label=?", (variant, task, attack, norm, eps_label))
        return {r[0] for r in cur}

    def fooled_uids(self, variant: str, task: str, norm: str, eps_values: Sequence[float],
                    attacks: Sequence[str] | None = None) -> dict[str, dict]:
        """Samples fooled (by any attack, or by one of ``attacks``) at any of the given eps of this norm:
        uid -> its row."""
        if not eps_values or (attacks is not None and not attacks):
            return {}
        marks = ",".join("?" * len(eps_values))
        only = f" AND attack IN ({','.join('?' * len(attacks))})" if attacks is not None else ""
        cur = self.db.execute(
            f"SELECT {','.join(RESULT_COLUMNS)} FROM results WHERE variant=? AND task=? AND norm=? "
            f"AND eps IN ({marks}) AND clean_correct=1 AND adv_correct=0{only} ORDER BY eps, attack",
            (variant, task, norm, *eps_values, *(attacks or ())))
        out: dict[str, dict] = {}
        for row in cur:
            rec = dict(zip(RESULT_COLUMNS, row))
            out.setdefault(rec["uid"], rec)
        return out

    def has_check(self, variant: str, task: str, name: str) -> bool:
        return self.db.execute("SELECT 1 FROM checks WHERE variant=? AND task=? AND name=?",
                               (variant, task, name)).fetchone() is not None

    def frame(self, table: str = "results"):
        """A pandas DataFrame of one table (``results``, ``clean``, ``transfer``, ``checks``, ``examples``,
        ``samples``)."""
        import pandas as pd

        if table not in {"results", "clean", "transfer", "checks", "examples", "meta", "samples"}:
            raise RobustOFAError(f"results store: unknown table {table!r}")
        return pd.read_sql_query(f"SELECT * FROM {table}", self.db)

    def close(self) -> None:
        self.db.close()

"""Session history in SQLite: pseudonymous patients, their sessions and repetitions, with schema versions.

No real names are needed: a patient is a pseudonym chosen by the therapist. The schema version lives in
SQLite's ``user_version``; each migration moves it up by one inside a transaction, so a database written by
an older release opens and upgrades, and one written by a newer release is refused rather than damaged.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger(__name__)

DB_NAME = "rehab.sqlite3"
PSEUDONYM_MAX_LEN = 64

_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE patients (
        id INTEGER PRIMARY KEY,
        pseudonym TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL
    );
    CREATE TABLE sessions (
        id INTEGER PRIMARY KEY,
        patient_id INTEGER NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
        exercise TEXT,
        started_at TEXT NOT NULL,
        duration_s REAL,
        frames INTEGER,
        frames_with_pose INTEGER,
        repetitions INTEGER NOT NULL DEFAULT 0,
        rom_best_deg REAL,
        rom_mean_deg REAL,
        source TEXT,
        output_dir TEXT,
        model TEXT,
        summary_json TEXT
    );
    CREATE TABLE repetitions (
        session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        number INTEGER NOT NULL,
        side TEXT NOT NULL DEFAULT '',
        start_s REAL,
        end_s REAL,
        rom_min_deg REAL,
        rom_max_deg REAL,
        rom_span_deg REAL,
        PRIMARY KEY (session_id, side, number)
    );
    CREATE INDEX sessions_by_patient ON sessions(patient_id, started_at);
    """,
    "ALTER TABLE sessions ADD COLUMN notes TEXT NOT NULL DEFAULT '';",
)
SCHEMA_VERSION = len(_MIGRATIONS)


class StoreError(RuntimeError):
    """A problem with the history database that the user can act on."""


@dataclass(frozen=True)
class Repetition:
    number: int
    rom_min_deg: float
    rom_max_deg: float
    start_s: float = math.nan
    end_s: float = math.nan
    side: str = ""

    @property
    def rom_span_deg(self) -> float:
        return self.rom_max_deg - self.rom_min_deg


@dataclass(frozen=True)
class SessionRecord:
    pseudonym: str
    exercise: str | None
    started_at: str
    duration_s: float | None = None
    frames: int | None = None
    frames_with_pose: int | None = None
    repetitions: tuple[Repetition, ...] = ()
    source: str = ""
    output_dir: str = ""
    model: str = ""
    notes: str = ""
    summary: dict = field(default_factory=dict)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def validate_pseudonym(pseudonym: str) -> str:
    name = (pseudonym or "").strip()
    if not name:
        raise StoreError("a patient needs a pseudonym (any label you choose, e.g. 'P-014'); no real name is needed")
    if len(name) > PSEUDONYM_MAX_LEN:
        raise StoreError(f"pseudonym is {len(name)} characters long; keep it to {PSEUDONYM_MAX_LEN} at most")
    return name


class Store:
    """The history database in ``data_dir``; one connection per Store, use it from one thread."""

    def __init__(self, data_dir: str | Path):
        self.data_dir = Path(data_dir)
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StoreError(f"cannot create the data folder {self.data_dir}: {err.strerror}") from err
        self.path = self.data_dir / DB_NAME
        try:
            self._db = sqlite3.connect(self.path)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except sqlite3.DatabaseError as err:
            raise StoreError(f"{self.path} is not a readable history database ({err}); move it aside and "
                             "a new one will be created") from err

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return self._db.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path} has schema version {version}, newer than this release understands "
                             f"({SCHEMA_VERSION}); upgrade rehab to open it")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self._transaction():
                for statement in _MIGRATIONS[target - 1].split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {target}")
            log.info("history database %s upgraded to schema version %d", self.path, target)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def add_patient(self, pseudonym: str) -> int:
        name = validate_pseudonym(pseudonym)
        row = self._db.execute("SELECT id FROM patients WHERE pseudonym = ?", (name,)).fetchone()
        if row:
            return row["id"]
        with self._transaction():
            cur = self._db.execute("INSERT INTO patients (pseudonym, created_at) VALUES (?, ?)", (name, now_iso()))
        return cur.lastrowid

    def patients(self) -> list[dict]:
        rows = self._db.execute(
            "SELECT p.pseudonym, p.created_at, COUNT(s.id) AS sessions, MAX(s.started_at) AS last_session "
            "FROM patients p LEFT JOIN sessions s ON s.patient_id = p.id GROUP BY p.id ORDER BY p.pseudonym")
        return [dict(r) for r in rows]

    def add_session(self, record: SessionRecord) -> int:
        patient_id = self.add_patient(record.pseudonym)
        spans = [r.rom_span_deg for r in record.repetitions if math.isfinite(r.rom_span_deg)]
        with self._transaction():
            cur = self._db.execute(
                "INSERT INTO sessions (patient_id, exercise, started_at, duration_s, frames, frames_with_pose, "
                "repetitions, rom_best_deg, rom_mean_deg, source, output_dir, model, notes, summary_json) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (patient_id, record.exercise, record.started_at, record.duration_s, record.frames,
                 record.frames_with_pose, len({(r.side, r.number) for r in record.repetitions}),
                 max(spans) if spans else None, sum(spans) / len(spans) if spans else None, record.source,
                 record.output_dir, record.model, record.notes, json.dumps(record.summary, default=str)))
            session_id = cur.lastrowid
            self._db.executemany(
                "INSERT INTO repetitions (session_id, number, side, start_s, end_s, rom_min_deg, rom_max_deg, "
                "rom_span_deg) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(session_id, r.number, r.side, r.start_s, r.end_s, r.rom_min_deg, r.rom_max_deg, r.rom_span_deg)
                 for r in record.repetitions])
        return session_id

    def sessions(self, pseudonym: str | None = None) -> list[dict]:
        query = ("SELECT s.id, p.pseudonym, s.exercise, s.started_at, s.duration_s, s.frames, s.frames_with_pose, "
                 "s.repetitions, s.rom_best_deg, s.rom_mean_deg, s.source, s.output_dir, s.model, s.notes "
                 "FROM sessions s JOIN patients p ON p.id = s.patient_id")
        args: Sequence = ()
        if pseudonym is not None:
            query += " WHERE p.pseudonym = ?"
            args = (validate_pseudonym(pseudonym),)
        return [dict(r) for r in self._db.execute(query + " ORDER BY s.started_at, s.id", args)]

    def repetitions(self, session_id: int) -> list[dict]:
        rows = self._db.execute("SELECT * FROM repetitions WHERE session_id = ? ORDER BY side, number", (session_id,))
        return [dict(r) for r in rows]

    def summary(self, session_id: int) -> dict:
        row = self._db.execute("SELECT summary_json FROM sessions WHERE id = ?", (session_id,)).fetchone()
        if row is None:
            raise StoreError(f"no session with id {session_id}")
        return json.loads(row["summary_json"] or "{}")

    def trend(self, pseudonym: str, exercise: str | None = None) -> list[dict]:
        """Per session of a patient, in time order: repetitions and best/mean range of motion."""
        return [
            {k: s[k] for k in ("id", "started_at", "exercise", "repetitions", "rom_best_deg", "rom_mean_deg")}
            for s in self.sessions(pseudonym) if exercise is None or s["exercise"] == exercise
        ]

    def export_csv(self, path: str | Path, pseudonym: str | None = None) -> Path:
        """All sessions (or one patient's) as CSV; written to a temporary name, then renamed."""
        path = Path(path)
        rows = self.sessions(pseudonym)
        tmp = path.with_name(path.name + ".part")
        columns = ["id", "pseudonym", "exercise", "started_at", "duration_s", "frames", "frames_with_pose",
                   "repetitions", "rom_best_deg", "rom_mean_deg", "source", "output_dir", "model", "notes"]
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(path)
        return path

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
import os
import sqlite3
import unicodedata
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
    # Who recorded, analysed, viewed and exported what: the dashboard's accounts leave a trail here.
    """
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        user TEXT NOT NULL,
        action TEXT NOT NULL,
        pseudonym TEXT,
        session_id INTEGER,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX audit_by_time ON audit(at);
    """,
)
AUDIT_ACTIONS = ("login", "logout", "record", "analyse", "view", "export")
# A spreadsheet runs a cell that starts with one of these as a formula (=HYPERLINK(...), +1, -1, @SUM(1)),
# and tab or carriage return let the next character start one: such a cell is written with a leading quote.
CSV_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
SCHEMA_VERSION = len(_MIGRATIONS)


class StoreError(RuntimeError):
    """A problem with the history database that the user can act on."""


@dataclass(frozen=True)
class StoredRepetition:
    """A repetition as the history database keeps it (rehab.analysis.reps.Repetition is the counter's own)."""

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
    repetitions: tuple[StoredRepetition, ...] = ()
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
    bad = sorted({f"U+{ord(c):04X}" for c in name if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")})
    if bad:
        raise StoreError(f"pseudonym contains control or invisible characters ({', '.join(bad)}); use letters, "
                         "digits, spaces and punctuation only")
    return name


def csv_safe(value):
    """A value for a CSV cell that a spreadsheet shows as text: formula-like strings get a leading quote."""
    if isinstance(value, str) and value.startswith(CSV_FORMULA_STARTS):
        return "'" + value
    return value


def make_private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) owner-only (0700), and narrow it if it already exists wider."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_mode & 0o077:
        log.warning("data folder %s was readable by other users; narrowing it to owner-only (0700)", path)
        os.chmod(path, 0o700)
    return path


class Store:
    """The history database in ``data_dir``; one connection per Store, use it from one thread."""

    def __init__(self, data_dir: str | Path):
        self.data_dir = Path(data_dir)
        try:
            make_private_dir(self.data_dir)
        except OSError as err:
            raise StoreError(f"cannot create the data folder {self.data_dir}: {err.strerror}") from err
        self.path = self.data_dir / DB_NAME
        try:
            if not self.path.exists():
                # Created owner-only before SQLite opens it, whatever the umask of the process.
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
            os.chmod(self.path, 0o600)
            self._db = sqlite3.connect(self.path)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except sqlite3.DatabaseError as err:
            raise StoreError(f"{self.path} is not a readable history database ({err}); move it aside and "
                             "a new one will be created") from err
        except OSError as err:
            raise StoreError(f"cannot open the history database {self.path}: {err.strerror}") from err

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
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows({k: csv_safe(v) for k, v in row.items()} for row in rows)
        tmp.replace(path)
        return path

    def audit(self, user: str, action: str, pseudonym: str | None = None, session_id: int | None = None,
              detail: str = "") -> None:
        """Record that ``user`` did ``action`` (one of AUDIT_ACTIONS), on a patient or session when given."""
        if action not in AUDIT_ACTIONS:
            raise ValueError(f"unknown audit action {action!r}; known: {', '.join(AUDIT_ACTIONS)}")
        with self._transaction():
            self._db.execute("INSERT INTO audit (at, user, action, pseudonym, session_id, detail) "
                             "VALUES (?, ?, ?, ?, ?, ?)", (now_iso(), user, action, pseudonym, session_id, detail))

    def audit_log(self, limit: int | None = None) -> list[dict]:
        """The audit trail, newest first."""
        query = "SELECT at, user, action, pseudonym, session_id, detail FROM audit ORDER BY id DESC"
        args: Sequence = ()
        if limit is not None:
            query += " LIMIT ?"
            args = (int(limit),)
        return [dict(r) for r in self._db.execute(query, args)]

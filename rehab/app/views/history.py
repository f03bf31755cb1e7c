"""History page: pseudonymous patients, their sessions, trends across sessions, CSV export."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from rehab.app import common
from rehab.outputs import VIDEO_FILE as VIDEO_NAME
from rehab.store import Store, StoreError

ALL_EXERCISES = "all exercises"
SESSION_COLUMNS = {
    "id": "Session", "started_at": "Started", "exercise": "Exercise", "duration_s": "Duration (s)",
    "repetitions": "Repetitions", "rom_best_deg": "Best range (°)", "rom_mean_deg": "Mean range (°)",
    "frames": "Frames", "frames_with_pose": "Frames with a pose", "source": "Source", "notes": "Notes",
}
REP_COLUMNS = {"side": "Side", "number": "Repetition", "start_s": "Start (s)", "end_s": "End (s)",
               "rom_min_deg": "Min (°)", "rom_max_deg": "Max (°)", "rom_span_deg": "Range (°)"}
AUDIT_ROWS_SHOWN = 200
AUDIT_COLUMNS = {"at": "When (UTC)", "user": "User", "action": "Action", "pseudonym": "Patient",
                 "session_id": "Session", "detail": "Detail"}
# Patients whose history this browser session has opened (each is written to the audit trail once).
VIEWED_KEY = "rehab.history.viewed"


def _export_bytes(store: Store, pseudonym: str | None) -> bytes:
    # The store writes the CSV (one definition of its columns); hand its bytes to the browser.
    with tempfile.TemporaryDirectory() as tmp:
        return store.export_csv(Path(tmp) / "sessions.csv", pseudonym).read_bytes()


def _patients_section(store: Store) -> None:
    patients = store.patients()
    if patients:
        table = pd.DataFrame(patients).rename(columns={
            "pseudonym": "Pseudonym", "created_at": "Added", "sessions": "Sessions", "last_session": "Last session"})
        st.dataframe(table, hide_index=True, width="stretch")
    else:
        st.info("No patients yet. Sessions recorded on the Live page or analysed on the Video page appear here; "
                "you can also add a pseudonym below.")
    with st.form("add_patient", clear_on_submit=True):
        name = st.text_input("Add a patient by pseudonym", placeholder="e.g. P-014",
                             help="Any label you choose. No real names are needed or stored.")
        if st.form_submit_button("Add patient"):
            try:
                store.add_patient(name)
            except StoreError as err:
                st.error(str(err))
            else:
                st.session_state[common.PATIENT_KEY] = name.strip()
                st.success(f"Patient {name.strip()} added.")
                st.rerun()


def _when(started_at: pd.Series) -> pd.Series:
    """ISO timestamps as short, sortable labels ("2026-11-01 10:00"); sessions are evenly spaced on charts."""
    return pd.to_datetime(started_at, utc=True, errors="coerce").dt.strftime("%Y-%m-%d %H:%M").fillna(started_at)


def _trend_charts(sessions: pd.DataFrame) -> None:
    if sessions.empty:
        return
    frame = sessions.assign(session=_when(sessions["started_at"]) + " #" + sessions["id"].astype(str))
    left, right = st.columns(2)
    with left:
        st.markdown("**Range of motion per session**")
        rom = frame.rename(columns={"rom_best_deg": "best (°)", "rom_mean_deg": "mean (°)"})
        if rom[["best (°)", "mean (°)"]].notna().any().any():
            st.line_chart(rom, x="session", y=["best (°)", "mean (°)"], x_label="session",
                          y_label="range of motion (°)")
        else:
            st.caption("No repetition with a measured range of motion yet.")
    with right:
        st.markdown("**Repetitions per session**")
        st.bar_chart(frame, x="session", y="repetitions", x_label="session", y_label="repetitions")


def _number(value: Any, pattern: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "not measured"
    return pattern.format(value)


def summary_rows(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A stored session summary in words: a recording's (duration, frames, its repetitions' summary) or an
    analysed video's repetition summary; keys it does not know are left out, never shown raw."""
    rows: list[tuple[str, str]] = []
    if "duration_s" in summary:
        rows.append(("Recorded", _number(summary["duration_s"], "{:.1f} s")))
    if "frames" in summary:
        rows.append(("Frames with a pose", f"{summary.get('frames_with_pose', 0)} of {summary['frames']}"))
    session = summary.get("repetitions") if isinstance(summary.get("repetitions"), Mapping) else summary
    if "count" in session:
        rows.append(("Repetitions", str(session["count"])))
    for side in session.get("sides") or ():
        tag = "" if side.get("side") == "both" else f" ({side.get('side')})"
        rows += [(f"Mean range of motion{tag}", _number(side.get("mean_span_deg"), "{:.1f}°")),
                 (f"Best range of motion{tag}", _number(side.get("best_span_deg"), "{:.1f}°")),
                 (f"Mean repetition time{tag}", _number(side.get("mean_duration_s"), "{:.2f} s")),
                 (f"Cadence{tag}", _number(side.get("cadence_per_min"), "{:.1f} per minute"))]
    if "symmetry_difference_deg" in session:
        rows.append(("Symmetry (left − right)", _number(session["symmetry_difference_deg"], "{:+.1f}°")))
    if summary.get("error"):
        rows.append(("Recording stopped early", str(summary["error"])))
    return rows


def _session_detail(store: Store, sessions: pd.DataFrame) -> None:
    labels = {int(row.id): f"#{row.id} · {when} · {row.exercise or 'no exercise'}"
              for row, when in zip(sessions.itertuples(), _when(sessions["started_at"]))}
    chosen = st.selectbox("Session details", list(labels), format_func=labels.get, index=len(labels) - 1)
    reps = store.repetitions(chosen)
    if reps:
        st.dataframe(pd.DataFrame(reps)[list(REP_COLUMNS)].round(1).rename(columns=REP_COLUMNS), hide_index=True,
                     width="stretch")
    else:
        st.caption("No repetitions were counted in this session.")
    rows = summary_rows(store.summary(chosen))
    if rows:
        with st.expander("Session summary"):
            st.table(pd.DataFrame(rows, columns=["", "value"]).set_index(""))
    output_dir = sessions.set_index("id").loc[chosen, "output_dir"]
    if output_dir:
        folder = Path(output_dir)
        if (folder / VIDEO_NAME).is_file():
            common.show_video(st.columns([2, 3])[0], folder / VIDEO_NAME)
        if folder.is_dir():
            st.caption(f"Files of this session: `{folder}`")
        else:
            st.warning(f"The files of this session are no longer in {folder}.")


def _audit_section(store: Store) -> None:
    with st.expander("Audit trail: who recorded, analysed, viewed and exported what"):
        entries = store.audit_log(limit=AUDIT_ROWS_SHOWN)
        if entries:
            st.dataframe(pd.DataFrame(entries).rename(columns=AUDIT_COLUMNS), hide_index=True, width="stretch")
        else:
            st.caption("Nothing recorded yet.")


def render() -> None:
    settings = common.load_app_settings()
    st.title("History")
    store = common.open_store(settings)
    if store is None:
        return
    with store:
        st.caption(f"Stored in `{store.path.resolve()}` (schema version {store.schema_version}). Patients are known "
                   "by pseudonym only.")
        _patients_section(store)
        known = [p["pseudonym"] for p in store.patients()]
        if not known:
            return
        st.divider()
        current = st.session_state.get(common.PATIENT_KEY)
        pseudonym = st.selectbox("Patient", known, index=known.index(current) if current in known else 0)
        st.session_state[common.PATIENT_KEY] = pseudonym
        viewed = st.session_state.setdefault(VIEWED_KEY, set())
        if pseudonym not in viewed:
            viewed.add(pseudonym)
            common.audit(settings, "view", pseudonym, detail="history page")
        sessions = pd.DataFrame(store.sessions(pseudonym))
        st.download_button("Export this patient's sessions (CSV)", _export_bytes(store, pseudonym),
                           file_name=f"sessions_{common.slug(pseudonym)}.csv", mime="text/csv",
                           on_click=common.audit, args=(settings, "export", pseudonym),
                           kwargs={"detail": "CSV of this patient's sessions"})
        if sessions.empty:
            st.info(f"{pseudonym} has no sessions yet. Record one on the Live page or analyse a video.")
        else:
            exercises = sorted({e for e in sessions["exercise"] if e})
            which = st.selectbox("Exercise", [ALL_EXERCISES, *exercises],
                                 index=1 if len(exercises) == 1 else 0)
            if which != ALL_EXERCISES:
                sessions = sessions[sessions["exercise"] == which]
            table = sessions[list(SESSION_COLUMNS)].assign(started_at=_when(sessions["started_at"]))
            st.dataframe(table.round(1).rename(columns=SESSION_COLUMNS), hide_index=True, width="stretch")
            _trend_charts(sessions)
            _session_detail(store, sessions)
        st.divider()
        st.download_button("Export all patients' sessions (CSV)", _export_bytes(store, None),
                           file_name="sessions_all.csv", mime="text/csv", on_click=common.audit,
                           args=(settings, "export"), kwargs={"detail": "CSV of all patients' sessions"})
        _audit_section(store)


# Streamlit runs a page file as "__main__"; importing it (e.g. in tests) renders nothing.
if __name__ == "__main__":
    render()

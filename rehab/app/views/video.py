"""Video analysis page: upload videos, get the annotated video, frames table and summary, file them in history."""

from __future__ import annotations

import json
import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from rehab.analysis.exercises import EXERCISES
from rehab.app import common
from rehab.batch_inputs import VIDEO_SUFFIXES
from rehab.outputs import (
    FRAMES_CSV,
    FRAMES_PARQUET,
    REPORT_HTML,
    REPORT_PDF,
    STAGING_DIR,
    SUMMARY_JSON,
    VIDEO_FILE,
)
from rehab.runtime.video import VideoError
from rehab.store import SessionRecord, StoredRepetition, StoreError, now_iso
from rehab.video_job import (
    BatchOptions,
    OutputFolderError,
    describe_error,
    process_video,
)

log = logging.getLogger(__name__)

RESULTS_KEY = "rehab.upload.results"
NO_EXERCISE = "none (poses and angles only)"
VIDEO_TYPES = sorted(s.lstrip(".") for s in VIDEO_SUFFIXES)
MB = 1024 * 1024
# Offered for download, in this order (DONE.json is batch bookkeeping, not for people).
DOWNLOADS = (VIDEO_FILE, REPORT_HTML, REPORT_PDF, FRAMES_CSV, FRAMES_PARQUET, SUMMARY_JSON)


@dataclass(frozen=True)
class UploadResult:
    name: str
    output_dir: Path | None = None  # None when the analysis failed
    summary: dict | None = None
    error: str | None = None
    filed_as: str | None = None  # pseudonym under which the session went into the history


def _repetitions(summary: dict) -> tuple[StoredRepetition, ...]:
    """The batch summary's repetition rows in the history database's form."""
    return tuple(StoredRepetition(number=int(r["number"]), side=str(r.get("side", "")),
                                  rom_min_deg=_num(r.get("min_deg")), rom_max_deg=_num(r.get("max_deg")),
                                  start_s=_num(r.get("start_s")), end_s=_num(r.get("end_s")))
                 for r in summary.get("repetitions") or [])


def _num(value) -> float:
    return math.nan if value is None else float(value)


def _analyse(upload, settings, model, runtime, exercise, pseudonym: str | None) -> UploadResult:
    name = upload.name
    # Through `rehab app`, the bytes are on disk (the server streamed them there) and the widget's file is
    # an empty record; otherwise (AppTest) they come with it.
    spooled = common.spooled_upload(upload)
    size = spooled.size_bytes if spooled is not None else upload.size
    if spooled is None and upload.size == 0 and common.gateway_active():
        return UploadResult(name, error=f"{name} is no longer on the server (removed, or the server restarted). "
                                        "Upload it again.")
    if size > settings.max_upload_bytes:
        return UploadResult(name, error=f"{name} is {size / MB:.1f} MB, over the upload limit of "
                                        f"{settings.max_upload_mb} MB (app setting max_upload_mb / "
                                        "REHAB_APP_MAX_UPLOAD_MB). Trim or compress the video and try again.")
    out_dir = common.new_output_dir(settings, "videos")
    bar = st.progress(0.0, text=f"{name}: reading…")

    def progress(done: int, expected: int) -> None:
        fraction = min(done / expected, 1.0) if expected else 0.0
        bar.progress(fraction, text=f"{name}: {done} of {expected or '?'} frames")

    options = BatchOptions(exercise=exercise.name if exercise else None, settings=runtime)
    # The upload (faces unblurred) lives only in the data folder's owner-only tmp/: streamed there by the server
    # and removed with the widget's file or the browser session (rehab.app.uploads), or, without it, copied to
    # a temporary folder removed on success, error and a stopped script alike. Only anonymised outputs are kept.
    with tempfile.TemporaryDirectory(prefix="upload-", dir=common.private_temp_dir(settings)) as tmp:
        if spooled is not None:
            source = spooled.path  # removed with the widget's file (rehab.app.uploads), not here
        else:
            source = Path(tmp) / f"upload{Path(name).suffix.lower() or '.mp4'}"
            source.write_bytes(upload.getbuffer())
        try:
            process_video(source, out_dir, model, options, progress, threads=settings.threads, source_name=name)
        except (VideoError, OutputFolderError, OSError, ValueError) as err:
            bar.empty()
            _remove_empty(out_dir)
            log.warning("upload %s failed: %s", name, err)
            reason = getattr(err, "reason", None) or describe_error(err)
            return UploadResult(name, error=f"{name} could not be analysed: {reason}. Is it a video file?")
    summary = json.loads((out_dir / SUMMARY_JSON).read_text(encoding="utf-8"))
    processing = summary["processing"]
    bar.progress(1.0, text=f"{name}: done, {processing['frames']} frames")
    filed = None
    if pseudonym:
        filed = _file(settings, summary, pseudonym, name, out_dir, exercise, model)
    return UploadResult(name, out_dir, summary, None, filed)


def _file(settings, summary: dict, pseudonym: str, name: str, out_dir: Path, exercise, model) -> str | None:
    """Add an analysed upload to the patient's history; the pseudonym on success."""
    store = common.open_store(settings)
    if store is None:
        return None
    processing = summary["processing"]
    record = SessionRecord(
        pseudonym=pseudonym, exercise=exercise.name if exercise else None, started_at=now_iso(),
        duration_s=processing["duration_s"], frames=processing["frames"],
        frames_with_pose=processing["frames_with_pose"], repetitions=_repetitions(summary),
        source=f"upload: {name}", output_dir=str(out_dir), model=model.info.name, summary=summary.get("session") or {})
    try:
        with store:
            session_id = store.add_session(record)
    except StoreError as err:
        st.error(f"{name}: analysed, but not added to the history: {err}")
        return None
    common.audit(settings, "analyse", pseudonym, session_id, detail=f"uploaded video {name}")
    return pseudonym


def _remove_empty(folder: Path) -> None:
    """Remove the output folder of a failed analysis and the batch's staging folder, when empty."""
    for path in (folder, folder.parent / STAGING_DIR):
        try:
            path.rmdir()
        except OSError:
            log.debug("kept %s (not empty or already gone)", path)


def _show(result: UploadResult, index: int) -> None:
    with st.container(border=True):
        st.subheader(result.name)
        if result.error:
            st.error(result.error)
            return
        folder = result.output_dir
        processing = result.summary["processing"]
        video, facts = st.columns([2, 3], gap="medium")
        common.show_video(video, folder / VIDEO_FILE)
        with facts:
            a, b = st.columns(2)
            a.metric("Frames", processing["frames"])
            b.metric("Frames with a pose", processing["frames_with_pose"])
            c, d = st.columns(2)
            c.metric("Repetitions", len(result.summary.get("repetitions") or []))
            d.metric("Duration", f"{processing['duration_s']:.1f} s")
            for file_name in DOWNLOADS:
                path = folder / file_name
                if path.is_file():
                    common.download_link(st, f"Download {file_name}", path, key=f"upload.download.{index}.{file_name}")
            if result.filed_as:
                st.caption(f"Added to the history of {result.filed_as}.")
            st.caption(f"Files in `{folder}`")


def render() -> None:
    settings = common.load_app_settings()
    st.title("Video analysis")
    st.caption(f"Upload one or more videos (up to {settings.max_upload_mb} MB each). The face-blurred, "
               "annotated video, a frames table and a summary are kept in the data folder; the upload itself "
               "is not.")
    model = common.get_model(settings)
    runtime = common.runtime_settings(settings)
    store = common.open_store(settings)
    left, right = st.columns(2)
    with left:
        if store is not None:
            with store:
                pseudonym = common.patient_picker(store, key="upload.patient",
                                                  label="Patient (pseudonym, optional)")
        else:
            pseudonym = None
    with right:
        choice = st.selectbox("Exercise", [NO_EXERCISE, *EXERCISES],
                              format_func=lambda n: n if n == NO_EXERCISE else EXERCISES[n].title,
                              key="upload.exercise")
    exercise = None if choice == NO_EXERCISE else EXERCISES[choice]
    uploads = st.file_uploader("Videos", type=VIDEO_TYPES, accept_multiple_files=True, key="upload.files")
    if not common.anonymize_enabled(settings):
        st.error("Face blurring is OFF for this browser session (Settings page): the annotated videos will show "
                 "faces.")
    ready = bool(uploads) and model is not None and runtime is not None
    if st.button("Analyse", type="primary", disabled=not ready):
        results = [_analyse(u, settings, model, runtime, exercise, pseudonym) for u in uploads]
        st.session_state[RESULTS_KEY] = results
    if model is None:
        st.info("Video analysis needs a working pose model; see the message above.")
    for i, result in enumerate(st.session_state.get(RESULTS_KEY, [])):
        _show(result, i)


# Streamlit runs a page file as "__main__"; importing it (e.g. in tests) renders nothing.
if __name__ == "__main__":
    render()

"""Live session page: the webcam through the shared pipeline, live angles, repetitions, range of motion, recording.

The WebRTC frame callback (streamlit-webrtc's worker thread) only calls LiveSession.submit; everything it
learns reaches this page through LiveSession.snapshot(), read by a fragment that refreshes itself.
"""

from __future__ import annotations

import math
import time

import altair as alt
import av
import numpy as np
import pandas as pd
import streamlit as st
from streamlit_webrtc import WebRtcMode, webrtc_streamer

from rehab.analysis.exercises import EXERCISES
from rehab.app import common, frame_relay
from rehab.app.live_session import LiveSession, LiveSnapshot, RecordingResult
from rehab.outputs import store_repetitions
from rehab.pipeline import Pipeline
from rehab.store import SessionRecord, StoreError

LIVE_KEY = "rehab.live.session"
CONFIG_KEY = "rehab.live.config"
PLAY_SINCE_KEY = "rehab.live.playing_since"
LAST_RECORDING_KEY = "rehab.live.last_recording"
WEBRTC_KEY = "live"
REFRESH_S = 0.7
# Seconds after START without a frame before the page suggests checking the camera.
NO_VIDEO_AFTER_S = 8.0
# Seconds without a new frame during a stream before the camera counts as stalled or disconnected.
STALL_AFTER_S = 3.0
ANGLE_SLIDER_MAX_DEG = 180
# Whole chart, axes included; the legend sits inside the plot (above the usual angles) to save room.
CHART_HEIGHT_PX = 260
# The camera is asked for at most the recording's rate: only the newest frame is processed anyway, and
# recordings are written at RECORD_FPS. (Frames the server cannot keep up with are dropped in bounded queues,
# rehab/app/frame_relay.py; at 30 fps on two busy cores they used to pile up at ~1.5 MB/s, benchmarks/README.md.)
CAMERA_MAX_FPS = 15
CAMERA_CONSTRAINTS = {"video": {"width": {"ideal": 640}, "height": {"ideal": 480},
                                "frameRate": {"ideal": CAMERA_MAX_FPS, "max": CAMERA_MAX_FPS}},
                      "audio": False}
# The component's own messages for camera problems, shown where the video would be.
CAMERA_MESSAGES = {
    "device_not_available": "No camera found. Connect a camera (and close other programs that use it), then press "
                            "START again.",
    "device_access_denied": "This browser may not use the camera. Allow camera access (camera icon in the address "
                            "bar), then press START again.",
    "media_api_not_available": "This browser cannot open a camera on this page. Use a recent Chrome, Edge or "
                               "Firefox, at http://localhost or over HTTPS.",
    "device_ask_permission": "Allow this page to use the camera when the browser asks.",
}
# The browser reports a camera it cannot open under the START button with its own error name.
CAMERA_TROUBLESHOOTING = (
    "If the camera does not start, the message under the video says why: **NotFoundError** – no camera is "
    "connected; **NotAllowedError** – the browser blocks the camera (allow it with the camera icon in the address "
    "bar); **NotReadableError** – another program is using it. Fix it, then press START again.")
# Host candidates only: the browser and this server meet on the local network; no third-party STUN/TURN
# server learns about the session.
RTC_CONFIGURATION = {"iceServers": []}


def _label(angle: str) -> str:
    return angle.replace("_", " ")


def _rom_text(rom) -> str:
    if rom is None or not rom.known:
        return "–"
    return f"{rom.min_deg:.0f}°–{rom.max_deg:.0f}° ({rom.span_deg:.0f}°)"


def _target_coverage(rom, target: tuple[int, int]) -> float:
    """Fraction of the target range that a repetition's range covered (0 when unknown)."""
    lo, hi = target
    if rom is None or not rom.known or hi <= lo:
        return 0.0
    overlap = min(rom.max_deg, hi) - max(rom.min_deg, lo)
    return max(0.0, min(1.0, overlap / (hi - lo)))


def _camera_status(snap: LiveSnapshot, playing: bool) -> None:
    if snap.error:
        st.error(f"Processing failed on the last frame ({snap.error}). The video is shown blurred whole until "
                 "processing works again.")
    if not playing:
        if snap.ended and snap.started:
            st.info("The camera stream has stopped. Press START to begin again.")
        else:
            st.info("Press **START** under the video to open the camera. The browser asks for permission "
                    "the first time.")
        st.caption(CAMERA_TROUBLESHOOTING)
        return
    if not snap.started:
        since = time.monotonic() - st.session_state.get(PLAY_SINCE_KEY, time.monotonic())
        if since > NO_VIDEO_AFTER_S:
            st.warning(f"No video from the camera after {since:.0f} s. Check that a camera is connected, that no "
                       "other program uses it, and that this browser may use it (camera icon in the address "
                       "bar); then press STOP and START.")
        else:
            st.caption("Connecting to the camera…")
    elif snap.ended or (snap.since_last_frame_s or 0.0) > STALL_AFTER_S:
        st.warning(f"No frame from the camera for {snap.since_last_frame_s:.0f} s: it may have been disconnected. "
                   "Reconnect it, then press STOP and START. A recording in progress was saved up to here.")


def _panel(live: LiveSession, target: tuple[int, int], playing: bool) -> None:
    snap = live.snapshot()
    if snap.finished_pending:
        # A recording ended with the stream: file it in the history with a full run of the page.
        st.rerun(scope="app")
    _camera_status(snap, playing)
    a, b = st.columns(2)
    c, d = st.columns(2)
    a.metric("Repetitions", snap.repetitions)
    b.metric("Processing FPS", "–" if math.isnan(snap.fps) else f"{snap.fps:.1f}",
             help="Frames the pose model really processed per second. Frames arriving while it is busy are "
                  "dropped, so the video stays live.")
    c.metric("Frames received", snap.frames_received)
    d.metric("Frames with a pose", snap.frames_with_pose,
             help=f"of {snap.frames_processed} processed; {snap.frames_dropped} dropped while the model was busy")

    st.markdown(f"**Target range:** {target[0]}°–{target[1]}°")
    current = "  ·  ".join(f"{side}: {_rom_text(rom)}" for side, rom in snap.current_rom.items()) or "–"
    st.markdown(f"**Current range of motion:** {current}")
    best = snap.best_rep
    if best is not None:
        coverage = _target_coverage(best.rom, target)
        st.markdown(f"**Best repetition** (#{best.number}, {best.side}): {_rom_text(best.rom)}")
        st.progress(coverage, text=f"{coverage:.0%} of the target range")
    else:
        st.markdown("**Best repetition:** none counted yet")

    if snap.history:
        st.altair_chart(_angle_chart(snap, target), width="stretch", height=CHART_HEIGHT_PX)
        st.caption("Primary angles over the last seconds; the target range is shaded green.")
    if snap.recording:
        st.markdown(f":red[● Recording] {snap.recording_s:.0f} s, {snap.recording_frames} frames")
    if snap.frames_processed:
        st.caption(f"Model time per frame: {snap.latency_ms:.0f} ms · anonymisation: {snap.anonymization}")


def _angle_chart(snap: LiveSnapshot, target: tuple[int, int]) -> alt.LayerChart:
    """The primary angles over the last seconds, over a shaded band of the target range."""
    t_end = snap.history[-1][0]
    rows = [{"time (s)": t - t_end, "angle": _label(name), "degrees": value}
            for t, angles in snap.history for name, value in angles.items()]
    degrees = alt.Scale(domain=[0, ANGLE_SLIDER_MAX_DEG])
    lines = alt.Chart(pd.DataFrame(rows)).mark_line().encode(
        x=alt.X("time (s):Q"),
        y=alt.Y("degrees:Q", title="angle (°)", scale=degrees),
        color=alt.Color("angle:N", legend=alt.Legend(orient="top-left", title=None)))
    band = alt.Chart(pd.DataFrame({"low": [target[0]], "high": [target[1]]})).mark_rect(
        opacity=0.15, color="green").encode(y=alt.Y("low:Q", scale=degrees), y2="high:Q")
    return alt.layer(band, lines)


def _register(settings, result: RecordingResult) -> None:
    """Add a finished recording to the history (under the pseudonym it was recorded for); show it."""
    st.session_state[LAST_RECORDING_KEY] = (result, None)
    pseudonym = result.summary.get("pseudonym")
    model_name = str(result.summary.get("model", ""))
    if pseudonym is None:
        st.warning(f"The recording was saved in {result.output_dir} but not added to the history: no patient "
                   "pseudonym was chosen.")
        return
    store = common.open_store(settings)
    if store is None:
        return
    record = SessionRecord(
        pseudonym=pseudonym, exercise=result.exercise, started_at=result.started_at, duration_s=result.duration_s,
        frames=result.frames, frames_with_pose=result.frames_with_pose,
        repetitions=store_repetitions(result.reps, t_offset_s=result.t0_s), source="live camera",
        output_dir=str(result.output_dir), model=model_name, summary=dict(result.summary))
    try:
        with store:
            session_id = store.add_session(record)
    except StoreError as err:
        st.error(f"The recording was saved in {result.output_dir} but could not be added to the history: {err}")
        return
    common.audit(settings, "record", pseudonym, session_id, detail=f"live recording, {result.duration_s:.0f} s")
    st.session_state[LAST_RECORDING_KEY] = (result, pseudonym)


def _last_recording() -> None:
    last: tuple[RecordingResult, str | None] | None = st.session_state.get(LAST_RECORDING_KEY)
    if last is None:
        return
    result, filed_as = last
    with st.container(border=True):
        st.success(f"Recording saved: {result.duration_s:.1f} s, {result.frames} frames "
                   f"({result.frames_with_pose} with a pose), {len(result.reps)} repetitions, in "
                   f"`{result.output_dir}`")
        if result.error:
            st.warning(f"Part of the recording could not be written: {result.error}")
        video, files = st.columns([3, 2])
        if result.video_path is not None:
            common.show_video(video, result.video_path)
        for path in (result.video_path, result.frames_csv, result.summary_json):
            if path is not None:
                common.download_link(files, f"Download {path.name}", path, key=f"download.{path}")
        if filed_as:
            files.caption(f"Added to the history of {filed_as}.")


def render() -> None:
    settings = common.load_app_settings()
    st.title("Live session")
    model = common.get_model(settings)
    runtime = common.runtime_settings(settings)
    store = common.open_store(settings)
    live: LiveSession = st.session_state.setdefault(LIVE_KEY, LiveSession())
    recording = live.snapshot().recording

    controls = st.columns([2, 2, 3])
    with controls[0]:
        if store is not None:
            with store:
                pseudonym = common.patient_picker(store, key="live.patient")
        else:
            pseudonym = None
    with controls[1]:
        name = st.selectbox("Exercise", list(EXERCISES), format_func=lambda n: EXERCISES[n].title,
                            key="live.exercise", disabled=recording)
        exercise = EXERCISES[name]
    with controls[2]:
        target = st.slider(f"Target range of {exercise.angle_label} (°)", 0, ANGLE_SLIDER_MAX_DEG,
                           tuple(exercise.target_range_deg), key=f"live.target.{name}")
    st.caption(exercise.description)
    if not common.anonymize_enabled(settings):
        st.error("Face blurring is OFF for this browser session (Settings page): faces are visible on screen "
                 "and in recordings.")
    if model is None or runtime is None:
        st.info("The live session needs a working pose model; see the message above.")
        return

    # Live video runs the face detector on a worker thread (batch runs it on every frame in the loop).
    runtime = runtime.with_overrides(anonymize={"face_detector_background": True})
    config = (id(model), name, runtime)
    if st.session_state.get(CONFIG_KEY) != config:
        live.configure(Pipeline(model, runtime, exercise), exercise.angles)
        st.session_state[CONFIG_KEY] = config

    async def on_frames(frames: list[av.VideoFrame]) -> list[av.VideoFrame]:
        # streamlit-webrtc's worker thread: no st.* here. Only the newest frame is processed, on the session's
        # own thread; this returns the newest processed image without waiting for it.
        image = frames[-1].to_ndarray(format="bgr24")
        out = live.submit(len(frames), image)
        return [av.VideoFrame.from_ndarray(np.ascontiguousarray(out), format="bgr24")]

    # Bounded frame queues between the camera and this callback (rehab/app/frame_relay.py), before any stream.
    frame_relay.install()
    for finished in live.take_finished():
        _register(settings, finished)

    left, right = st.columns([3, 2], gap="medium")
    with left:
        ctx = webrtc_streamer(key=WEBRTC_KEY, mode=WebRtcMode.SENDRECV, queued_video_frames_callback=on_frames,
                              on_video_ended=live.stream_ended, rtc_configuration=RTC_CONFIGURATION,
                              media_stream_constraints=CAMERA_CONSTRAINTS, async_processing=True,
                              translations=CAMERA_MESSAGES,
                              video_html_attrs={"style": {"width": "100%"}, "autoPlay": True, "controls": False,
                                                "muted": True})
        playing = bool(ctx.state.playing)
        if playing:
            st.session_state.setdefault(PLAY_SINCE_KEY, time.monotonic())
        else:
            st.session_state.pop(PLAY_SINCE_KEY, None)
        _record_controls(settings, live, pseudonym, exercise, target, playing, model)
    with right:
        st.fragment(_panel, run_every=REFRESH_S if playing else None)(live, target, playing)
    _last_recording()


def _record_controls(settings, live: LiveSession, pseudonym, exercise, target, playing: bool, model) -> None:
    if live.snapshot().recording:
        if st.button("■ Stop and save the recording", type="primary"):
            result = live.stop_recording()
            if result is not None:
                _register(settings, result)
            st.rerun()
        return
    if st.button("● Record", disabled=not playing or pseudonym is None,
                 help="Saves the anonymised, annotated video (H.264), its frames table and a summary, and adds "
                      "the session to the patient's history."):
        out = common.new_output_dir(settings, "recordings")
        live.start_recording(out, exercise.name, info={
            "pseudonym": pseudonym, "model": model.info.name, "target_range_deg": list(target),
            "anonymized": common.anonymize_enabled(settings)})
        st.session_state.pop(LAST_RECORDING_KEY, None)
        st.rerun()
    if pseudonym is None:
        st.caption("Choose or type a patient pseudonym to record.")
    elif not playing:
        st.caption("Start the camera to record.")


# Streamlit runs a page file as "__main__"; importing it (e.g. in tests) renders nothing.
if __name__ == "__main__":
    render()

"""The live page's thread-safe bridge (LiveSession) with the real pipeline, a real model file and real frames.

The WebRTC part needs a browser (tests/e2e/test_browser_live.py); everything behind the frame callback is
tested here on a controlled clock: frame dropping, the processing rate, recording timing and files, a stream
that ends mid-recording, and a frame that cannot be processed.
"""

from __future__ import annotations

import json
import math

import av
import numpy as np
import pandas as pd
import pytest

from rehab.app.live_session import MAX_REPEAT_S, RECORD_FPS, LiveSession
from rehab.pipeline import Pipeline
from rehab.runtime.model import PoseModel
from rehab.settings import RuntimeSettings
from tests.e2e.browser_support import read_frames, write_tiny_pose_model

CLIP = "videos/pose2sim_balancing_cam01.mp4"
FRAME_INTERVAL_S = 0.1


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return PoseModel.load(write_tiny_pose_model(tmp_path_factory.mktemp("model") / "tiny.onnx"), threads=1)


@pytest.fixture(scope="module")
def frames(shared_dir):
    from tests.conftest import check_data

    return read_frames(check_data(shared_dir / CLIP), every=4, max_side_px=320, limit=25)


def _live(model, clock) -> LiveSession:
    live = LiveSession(clock=clock)
    live.configure(Pipeline(model, RuntimeSettings(), "squat"), ("left_knee_flexion", "right_knee_flexion"))
    return live


def _decoded_frames(path) -> int:
    with av.open(str(path)) as video:
        stream = video.streams.video[0]
        assert stream.codec_context.name == "h264"
        return sum(1 for _ in video.decode(stream))


def test_only_the_newest_frame_is_processed_and_the_real_rate_is_measured(model, frames):
    clock = Clock()
    live = _live(model, clock)
    for frame in frames[:10]:
        out = live.process(3, frame)  # three frames arrived while the model was busy: two are dropped
        assert out.shape == frame.shape and out.dtype == np.uint8
        clock.t += FRAME_INTERVAL_S
    snap = live.snapshot()
    assert (snap.frames_received, snap.frames_processed, snap.frames_dropped) == (30, 10, 20)
    assert snap.fps == pytest.approx(1.0 / FRAME_INTERVAL_S)
    assert snap.started and not snap.ended and snap.error is None
    assert len(snap.history) == 10
    assert set(snap.history[-1][1]) == {"left_knee_flexion", "right_knee_flexion"}
    assert snap.anonymization  # the pipeline said how it blurred the face


def test_submit_never_waits_for_the_model_and_keeps_at_most_one_frame_waiting(model, frames):
    """Frames handed over far faster than the pipeline processes them: none piles up, the newest wins."""
    import time
    import weakref

    live = LiveSession()  # the real clock: a processing thread runs beside this one
    live.configure(Pipeline(model, RuntimeSettings(), "squat"), ("left_knee_flexion",))
    submitted, most_alive, refs = 400, 0, []
    for i in range(submitted):
        frame = frames[i % len(frames)].copy()  # a new array each time, as decoded camera frames are
        refs.append(weakref.ref(frame))
        out = live.submit(1, frame)
        assert out.shape == frame.shape and out.dtype == np.uint8
        del frame
        # Alive: the one waiting, the one being processed (and the pipeline's hold on it); never a queue.
        most_alive = max(most_alive, sum(r() is not None for r in refs))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and live._worker is not None:  # the thread ends once idle
        time.sleep(0.1)
    snap = live.snapshot()
    print(f"submitted {submitted}, processed {snap.frames_processed}, at most {most_alive} frames alive")
    assert most_alive <= 3
    assert snap.frames_received == submitted and 1 <= snap.frames_processed < submitted
    assert snap.frames_dropped == submitted - snap.frames_processed
    # The newest frame was processed last, and what goes back now is that processed picture, not a blur.
    processed = live.submit(1, frames[0])
    assert _detail(processed) > 0.5 * _detail(frames[0])
    live.stream_ended()
    # A new stream does not start with the old stream's picture: blurred until its own frame is processed.
    assert _detail(live.submit(1, frames[1])) < 0.2 * _detail(frames[1])


def test_recording_keeps_real_time_and_writes_video_table_and_summary(model, frames, tmp_path):
    clock = Clock()
    live = _live(model, clock)
    live.start_recording(tmp_path, "squat", info={"pseudonym": "P-1"})
    for i, frame in enumerate(frames[:20]):
        live.process(1, frame)
        # A 5 s camera stall after frame 10 is not filled with 5 s of a frozen picture.
        clock.t += 5.0 if i == 10 else FRAME_INTERVAL_S
    assert live.snapshot().recording
    result = live.stop_recording()
    assert not live.snapshot().recording and live.stop_recording() is None
    assert result.error is None and result.frames == 20
    assert result.duration_s == pytest.approx(19 * FRAME_INTERVAL_S + 5.0 - FRAME_INTERVAL_S)
    # 10 fps processed -> 15 fps video: frames repeated to keep time; the stall costs at most MAX_REPEAT_S.
    expected = (result.duration_s - 5.0 + MAX_REPEAT_S) * RECORD_FPS
    assert result.video_frames == pytest.approx(expected, abs=2)
    assert _decoded_frames(result.video_path) == result.video_frames
    table = pd.read_csv(result.frames_csv)
    assert len(table) == 20 and table["time_s"].iloc[0] == 0.0
    assert table["time_s"].iloc[-1] == pytest.approx(result.duration_s)
    assert list(pd.read_parquet(result.frames_csv.with_suffix(".parquet")).columns) == list(table.columns)
    summary = json.loads(result.summary_json.read_text())
    assert summary["frames"] == 20 and summary["pseudonym"] == "P-1" and summary["exercise"] == "squat"


def test_a_camera_that_lowers_its_resolution_mid_recording_keeps_the_video_going(model, frames, tmp_path):
    """Chromium sends 480x360 instead of 640x480 when its machine is busy: the video keeps its first size."""
    import cv2

    from rehab.app.live_session import fit_frame

    clock = Clock()
    live = _live(model, clock)
    live.start_recording(tmp_path, "squat", info={})
    first = frames[0].shape
    for i, frame in enumerate(frames[:12]):
        if i >= 6:
            frame = cv2.resize(frame, (frame.shape[1] * 3 // 4, frame.shape[0] * 3 // 4))
        live.process(1, frame)
        clock.t += FRAME_INTERVAL_S
    result = live.stop_recording()
    assert result.error is None and result.frames == 12
    decoded = read_frames(result.video_path)
    assert len(decoded) == result.video_frames and {f.shape for f in decoded} == {first}
    # Another aspect is letterboxed, not stretched.
    wide = fit_frame(np.full((10, 40, 3), 255, np.uint8), (20, 20))
    assert wide.shape == (20, 20, 3) and wide[0].max() == 0 and wide[10].min() == 255


def test_a_stream_that_ends_while_recording_still_saves_it(model, frames, tmp_path):
    clock = Clock()
    live = _live(model, clock)
    live.start_recording(tmp_path, "squat", info={})
    for frame in frames[:5]:
        live.process(1, frame)
        clock.t += FRAME_INTERVAL_S
    live.stream_ended()  # what streamlit-webrtc calls when the camera track ends
    snap = live.snapshot()
    assert snap.ended and not snap.recording and snap.finished_pending == 1
    [result] = live.take_finished()
    assert live.take_finished() == []
    assert result.frames == 5 and _decoded_frames(result.video_path) == result.video_frames


def test_a_frame_that_cannot_be_processed_is_reported_and_blurred_whole(model, frames):
    live = _live(model, Clock())
    bad = np.ascontiguousarray(frames[0][:, :, :2])  # two channels: not an image the pipeline accepts
    out = live.process(1, bad)
    snap = live.snapshot()
    assert snap.error is not None and "ValueError" in snap.error
    assert snap.frames_processed == 0
    # Nothing recognisable goes back to the browser: far less detail than the frame that came in.
    assert _detail(out) < 0.2 * _detail(bad)
    # The next good frame clears the error.
    live.process(1, frames[1])
    assert live.snapshot().error is None


def test_without_a_pipeline_frames_go_back_blurred(frames):
    live = LiveSession(clock=Clock())
    out = live.process(1, frames[0])
    assert _detail(out) < 0.2 * _detail(frames[0])
    assert math.isnan(live.snapshot().fps)


def _detail(image: np.ndarray) -> float:
    """Mean absolute difference between neighbouring pixels: high for a sharp picture, low when pixelated."""
    img = image.astype(np.float32)
    return float(np.abs(np.diff(img, axis=1)).mean() + np.abs(np.diff(img, axis=0)).mean())


# ---- what the live page says about the camera (its panel, rendered by AppTest without WebRTC) -------------


def _panel_script(case: str, model_path: str) -> None:
    import time

    import numpy as np
    import streamlit as st

    from rehab.app.live_session import LiveSession
    from rehab.app.views import live as page
    from rehab.pipeline import Pipeline
    from rehab.runtime.model import PoseModel

    clock = [100.0]
    live = LiveSession(clock=lambda: clock[0])
    frame = np.full((120, 160, 3), 128, np.uint8)
    playing = True
    if case == "no video yet":
        st.session_state[page.PLAY_SINCE_KEY] = time.monotonic() - 2 * page.NO_VIDEO_AFTER_S
    elif case == "stalled":
        live.process(1, frame)
        clock[0] += 2 * page.STALL_AFTER_S
    elif case == "ended":
        live.process(1, frame)
        live.stream_ended()
    elif case == "stopped":
        live.process(1, frame)
        live.stream_ended()
        playing = False
    elif case == "running":
        live.configure(Pipeline(PoseModel.load(model_path, threads=1), exercise="squat"),
                       ("left_knee_flexion", "right_knee_flexion"))
        for _ in range(5):
            live.process(2, frame)
            clock[0] += 0.1
    elif case == "failing":
        live.configure(Pipeline(PoseModel.load(model_path, threads=1)), ())
        live.process(1, frame[:, :, :2])
    page._panel(live, (0, 90), playing)


@pytest.mark.parametrize("case, kind, text", [
    ("no video yet", "warning", "No video from the camera after"),
    ("stalled", "warning", "No frame from the camera for 6 s: it may have been disconnected"),
    ("ended", "warning", "it may have been disconnected"),
    ("stopped", "info", "The camera stream has stopped"),
    ("failing", "error", "Processing failed on the last frame (ValueError"),
])
def test_camera_problems_are_explained_on_the_page(case, kind, text, tmp_path):
    from streamlit.testing.v1 import AppTest

    model = write_tiny_pose_model(tmp_path / "tiny.onnx")
    at = AppTest.from_function(_panel_script, args=(case, str(model)), default_timeout=30).run()
    assert not at.exception, at.exception
    messages = [e.value for e in getattr(at, kind)]
    assert any(text in m for m in messages), (case, messages)


def test_running_stream_shows_counts_rate_and_the_angle_chart(tmp_path):
    from streamlit.testing.v1 import AppTest

    model = write_tiny_pose_model(tmp_path / "tiny.onnx")
    at = AppTest.from_function(_panel_script, args=("running", str(model)), default_timeout=30).run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Frames received"] == "10" and metrics["Processing FPS"] == "10.0"
    assert len(at.get("vega_lite_chart")) == 1
    assert not at.warning and not at.error

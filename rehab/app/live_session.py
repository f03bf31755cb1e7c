"""The bridge between the WebRTC frame thread and the live page: one thread-safe object per browser session.

The frame callback runs on streamlit-webrtc's worker thread and never touches ``st.*``. It hands each newest
frame to :meth:`LiveSession.submit`, which returns at once; a processing thread per stream takes the newest
waiting frame to :meth:`LiveSession.process`, which runs the shared pipeline, keeps counters, a short angle history
and, while recording, writes the annotated frames. The page reads a consistent :class:`LiveSnapshot` under
the same lock. Frames that arrive while the model is busy are dropped (only the newest is processed) and
counted, so the video stays live on a slow machine and the page can show the real processing rate.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from rehab import outputs
from rehab.analysis.reps import ExerciseRep, RangeOfMotion
from rehab.analysis.summary import summarize
from rehab.outputs import FrameTableWriter, frame_row
from rehab.runtime.anonymize import pixelate
from rehab.runtime.video import VideoWriter

log = logging.getLogger(__name__)

# Recordings are written at a constant rate; each processed frame is repeated until the next one so that
# the video keeps real time whatever the processing rate.
RECORD_FPS = 15.0
# A pause longer than this (camera stalled) is not filled with repeated frames: the video skips it.
MAX_REPEAT_S = 1.0
# Angle history kept for the live chart.
HISTORY_S = 20.0
# Processing rate measured over the last frames.
FPS_WINDOW_FRAMES = 30
# When a frame cannot be processed it goes back pixelated whole, this coarsely: no face survives it.
FALLBACK_BLOCKS = 8
# The processing thread of a stream ends after this long without a frame (a new frame starts it again).
WORKER_IDLE_S = 5.0


@dataclass(frozen=True)
class RecordingResult:
    output_dir: Path
    video_path: Path | None
    frames_csv: Path
    summary_json: Path
    started_at: str
    exercise: str | None
    duration_s: float
    frames: int
    frames_with_pose: int
    video_frames: int
    reps: tuple[ExerciseRep, ...]
    # Pipeline clock time of the first recorded frame: repetition times are relative to it in the outputs.
    t0_s: float
    summary: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class LiveSnapshot:
    frames_received: int
    frames_processed: int
    frames_dropped: int
    frames_with_pose: int
    fps: float
    latency_ms: float
    since_last_frame_s: float | None
    started: bool
    ended: bool
    error: str | None
    repetitions: int
    current_rom: Mapping[str, RangeOfMotion]
    best_rep: ExerciseRep | None
    last_rep: ExerciseRep | None
    history: tuple[tuple[float, Mapping[str, float]], ...]
    anonymization: str
    recording: bool
    recording_s: float
    recording_frames: int
    # Recordings finished on the frame thread (the stream ended) waiting for the page to file them.
    finished_pending: int = 0


class _Recorder:
    """The open files of one recording; used under the LiveSession lock only."""

    def __init__(self, output_dir: Path, exercise: str | None, info: Mapping[str, Any]) -> None:
        self.output_dir = output_dir
        self.exercise = exercise
        self.info = dict(info)
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.writer = VideoWriter(output_dir / outputs.VIDEO_FILE, fps=RECORD_FPS, threads=1)
        # Rows go to disk as they come (a chunk at a time): a long session's memory stays flat.
        self.table = FrameTableWriter(output_dir / outputs.FRAMES_CSV, output_dir / outputs.FRAMES_PARQUET,
                                      float_format=None)
        self.reps: list[ExerciseRep] = []
        self.t0: float | None = None
        self.video_t0: float | None = None
        self.t_last = 0.0
        self.frames_with_pose = 0
        self.error: str | None = None
        self.video_size: tuple[int, int] | None = None  # (width, height) of the first recorded frame

    def add(self, result, frame_bgr: np.ndarray) -> None:
        t = result.timestamp_s
        if self.t0 is None:
            self.t0 = t
        row = frame_row(result, source_frame=result.frame_index)
        # Times from the start of the recording, not from the start of the camera stream.
        row["time_s"] -= self.t0
        self.table.add(row)
        self.frames_with_pose += int(result.person_found)
        if result.new_rep is not None:
            self.reps.append(result.new_rep)
        self.t_last = t
        if self.error is not None:
            return
        # Frames processed faster than RECORD_FPS are skipped, slower ones repeated; a longer stall than
        # MAX_REPEAT_S is cut out of the video by moving the video's time origin.
        if self.video_t0 is None:
            self.video_t0 = t
        cap = int(MAX_REPEAT_S * RECORD_FPS)
        behind = int((t - self.video_t0) * RECORD_FPS) + 1 - self.writer.frames_written
        if behind > cap:
            self.video_t0 += (behind - cap) / RECORD_FPS
            behind = cap
        repeats = max(0, behind)
        if self.video_size is None:
            self.video_size = (frame_bgr.shape[1], frame_bgr.shape[0])
        # The browser lowers the camera's resolution when its machine or the network is busy (640x480 became
        # 480x360 in a soak run): the video keeps its first size, the frame scaled into it.
        frame_bgr = fit_frame(frame_bgr, self.video_size)
        try:
            for _ in range(repeats):
                self.writer.write(frame_bgr)
        except (ValueError, OSError) as err:
            # A full disk or a broken encoder: keep the table, stop the video.
            self.error = f"the video stopped after {self.writer.frames_written} frames: {err}"
            log.warning("recording %s: %s", self.output_dir, self.error)

    def finish(self) -> RecordingResult:
        video: Path | None = self.writer.path
        try:
            self.writer.close()
        except Exception as err:  # noqa: BLE001 - any encoder failure must not lose the table and summary
            self.error = self.error or f"the video could not be finished: {err}"
            self.writer.abort()
        if self.error is not None or not video.is_file():
            video = None
        t0 = self.t0 if self.t0 is not None else 0.0
        duration = self.t_last - t0
        self.table.close()
        frames_csv = self.table.csv_path
        if self.reps:
            outputs.write_repetitions(self.reps, self.output_dir / outputs.REPETITIONS_CSV, t_offset_s=t0)
        summary: dict[str, Any] = {
            "started_at": self.started_at, "exercise": self.exercise, "duration_s": duration,
            "frames": self.table.rows_written, "frames_with_pose": self.frames_with_pose,
            "video": outputs.VIDEO_FILE if video else None, "video_fps": RECORD_FPS,
            "video_frames": self.writer.frames_written, **self.info,
        }
        if self.exercise is not None:
            summary["repetitions"] = summarize(self.exercise, self.reps).to_dict()
        if self.error:
            summary["error"] = self.error
        summary_json = outputs.write_json(summary, self.output_dir / outputs.SUMMARY_JSON)
        return RecordingResult(
            output_dir=self.output_dir, video_path=video, frames_csv=frames_csv, summary_json=summary_json,
            started_at=self.started_at, exercise=self.exercise, duration_s=duration, frames=self.table.rows_written,
            frames_with_pose=self.frames_with_pose, video_frames=self.writer.frames_written,
            reps=tuple(self.reps), t0_s=t0, summary=summary, error=self.error)


class LiveSession:
    """Thread-safe state of one live stream. ``process`` runs on the frame thread; the rest on the page's."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._pipeline = None
        self._recorder: _Recorder | None = None
        self._finished: list[RecordingResult] = []
        # Hand-over between the frame callback (submit) and the processing thread: one slot, newest frame wins.
        self._work = threading.Condition()
        self._pending: np.ndarray | None = None
        self._pending_arrived = 0
        self._output: np.ndarray | None = None
        self._worker: threading.Thread | None = None
        self._reset_stats()

    def _reset_stats(self) -> None:
        self._received = 0
        self._processed = 0
        self._with_pose = 0
        self._done_times: deque[float] = deque(maxlen=FPS_WINDOW_FRAMES)
        self._latency_ms = math.nan
        self._last_frame_at: float | None = None
        self._ended = False
        self._error: str | None = None
        self._history: deque[tuple[float, Mapping[str, float]]] = deque()
        self._angles: tuple[str, ...] = ()
        self._rep_state = None
        self._best: ExerciseRep | None = None
        self._anonymization = ""

    def configure(self, pipeline, angles: tuple[str, ...]) -> None:
        """Use a new pipeline from the next frame on (new exercise, settings or model); counts restart."""
        with self._lock:
            self._pipeline = pipeline
            last = self._last_frame_at
            self._reset_stats()
            # The stream itself goes on: keep what is known about the camera.
            self._last_frame_at = last
            self._angles = tuple(angles)

    # ---- frame callback ------------------------------------------------------------------------

    def submit(self, frames_arrived: int, frame_bgr: np.ndarray) -> np.ndarray:
        """Hand the newest of ``frames_arrived`` frames to this stream's processing thread and return the
        newest processed image at once (the frame pixelated whole until there is one).

        Never waits for the model: a frame still waiting when the next arrives is replaced (and counted as
        dropped), so at most one frame waits and one is processed, however fast the camera and however slow
        the machine. streamlit-webrtc's own worker then never falls behind either (it gives up on a callback
        that takes over 10 s, which ends the stream).
        """
        now = self._clock()
        with self._lock:
            self._last_frame_at = now
            self._ended = False
        with self._work:
            self._pending = frame_bgr
            self._pending_arrived += frames_arrived
            if self._worker is None:
                self._worker = threading.Thread(target=self._work_loop, name="rehab-live-frames", daemon=True)
                self._worker.start()
            self._work.notify()
            out = self._output
        return out if out is not None else pixelate(frame_bgr, FALLBACK_BLOCKS)

    def _work_loop(self) -> None:
        while True:
            with self._work:
                if self._pending is None:
                    self._work.wait(WORKER_IDLE_S)
                if self._pending is None:
                    self._worker = None
                    return
                image, arrived = self._pending, self._pending_arrived
                self._pending, self._pending_arrived = None, 0
            out = self.process(arrived, image)
            with self._work:
                self._output = out

    # ---- processing thread ---------------------------------------------------------------------

    def process(self, frames_arrived: int, frame_bgr: np.ndarray) -> np.ndarray:
        """Process the newest of ``frames_arrived`` frames; returns the image to send back to the browser."""
        now = self._clock()
        with self._lock:
            self._received += frames_arrived
            self._last_frame_at = now
            self._ended = False
            pipeline = self._pipeline
        if pipeline is None:
            return pixelate(frame_bgr, FALLBACK_BLOCKS)
        try:
            result = pipeline.process(frame_bgr, now)
        except Exception as err:  # noqa: BLE001 - any failure shows on the page; the stream goes on, blurred
            log.exception("live frame processing failed")
            with self._lock:
                self._error = f"{type(err).__name__}: {err}"
            return pixelate(frame_bgr, FALLBACK_BLOCKS)
        done = self._clock()
        with self._lock:
            if pipeline is not self._pipeline:
                return result.frame_bgr
            self._processed += 1
            self._with_pose += int(result.person_found)
            self._done_times.append(done)
            self._latency_ms = result.total_ms
            self._error = None
            self._anonymization = result.anonymization
            self._rep_state = result.reps
            if result.new_rep is not None and (
                    self._best is None or _span(result.new_rep) > _span(self._best)):
                self._best = result.new_rep
            self._history.append((now, {a: result.angles_deg.get(a, math.nan) for a in self._angles}))
            while self._history and self._history[0][0] < now - HISTORY_S:
                self._history.popleft()
            if self._recorder is not None:
                self._recorder.add(result, result.frame_bgr)
        return result.frame_bgr

    def stream_ended(self) -> None:
        """The camera track ended (stopped, disconnected, page closed): finish any recording."""
        with self._work:
            # A new stream must not start with the last image of this one.
            self._pending, self._pending_arrived, self._output = None, 0, None
        with self._lock:
            self._ended = True
            recorder, self._recorder = self._recorder, None
        if recorder is not None:
            result = recorder.finish()
            with self._lock:
                self._finished.append(result)

    # ---- page thread --------------------------------------------------------------------------

    def start_recording(self, output_dir: Path, exercise: str | None, info: Mapping[str, Any]) -> None:
        with self._lock:
            if self._recorder is not None:
                return
            self._recorder = _Recorder(output_dir, exercise, info)

    def stop_recording(self) -> RecordingResult | None:
        with self._lock:
            recorder, self._recorder = self._recorder, None
        return recorder.finish() if recorder is not None else None

    def take_finished(self) -> list[RecordingResult]:
        """Recordings finished on the frame thread (stream ended) that the page has not handled yet."""
        with self._lock:
            done, self._finished = self._finished, []
        return done

    def snapshot(self) -> LiveSnapshot:
        now = self._clock()
        with self._lock:
            times = self._done_times
            fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else math.nan
            state = self._rep_state
            rec = self._recorder
            return LiveSnapshot(
                frames_received=self._received, frames_processed=self._processed,
                frames_dropped=max(self._received - self._processed, 0), frames_with_pose=self._with_pose,
                fps=fps, latency_ms=self._latency_ms,
                since_last_frame_s=None if self._last_frame_at is None else now - self._last_frame_at,
                started=self._last_frame_at is not None, ended=self._ended, error=self._error,
                repetitions=state.count if state is not None else 0,
                current_rom=dict(state.current_rom) if state is not None else {},
                best_rep=self._best, last_rep=state.last_rep if state is not None else None,
                history=tuple(self._history), anonymization=self._anonymization,
                recording=rec is not None,
                recording_s=(rec.t_last - rec.t0) if rec is not None and rec.t0 is not None else 0.0,
                recording_frames=rec.table.rows if rec is not None else 0,
                finished_pending=len(self._finished))


def fit_frame(frame_bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``frame_bgr`` scaled to fit ``size`` (width, height), its aspect kept, centred on black; as is if it fits."""
    import cv2

    width, height = size
    h, w = frame_bgr.shape[:2]
    if (w, h) == (width, height):
        return frame_bgr
    scale = min(width / w, height / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    scaled = cv2.resize(frame_bgr, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    out = np.zeros((height, width, 3), np.uint8)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    out[top:top + new_h, left:left + new_w] = scaled
    return out


def _span(rep: ExerciseRep) -> float:
    span = rep.rom.span_deg
    return span if math.isfinite(span) else -math.inf

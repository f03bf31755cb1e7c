"""Video in and out, and the checks every frame passes before the pipeline sees it.

Reading goes through PyAV (FFmpeg) and falls back to OpenCV for what PyAV cannot open. Phone videos store
their orientation as a display matrix (rotation side data) rather than rotated pixels: frames are turned
upright here, so a portrait recording is portrait everywhere after the reader. Timestamps are seconds from
the first frame and never go backwards.

``prefetch`` moves decoding to a reader thread that keeps a few frames ahead of the consumer, so decoding overlaps
the pose model (the live 720p pipeline went from 47.8 to 69.2 frames/s, benchmarks/bench_pipeline.py
--prefetch); a decoder error still reaches the consumer, in its own thread, as the same exception.

Writing produces H.264 (libx264, yuv420p, "faststart") .mp4 through PyAV, the one combination browsers play:
OpenCV's mp4v .mp4 does not play in Chromium. The file appears under its final name only when complete: it is
written to a hidden temporary name in the same folder and renamed on close.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

from rehab.runtime.image import as_bgr_frame

logger = logging.getLogger(__name__)

# A file whose header promises more frames than decode is cut short; a few frames of slack allow for
# containers whose frame count is an estimate.
TRUNCATION_SLACK_FRAMES = 2
TRUNCATION_SLACK_FRACTION = 0.01
# Quality of written video: x264's constant rate factor (lower is better; 23 is its default) and a fast
# preset, since the encoder shares two cores with the pose model.
DEFAULT_CRF = 23
DEFAULT_PRESET = "veryfast"
DEFAULT_FPS = 30.0
QUARTER_TURN_DEG = 90
# Decoded frames a prefetch reader thread may hold ahead of the consumer (a 1080p BGR frame is 6 MB).
DEFAULT_PREFETCH_FRAMES = 4
PREFETCH_THREAD_NAME = "rehab-video-prefetch"
# How often a blocked reader thread looks whether the consumer has stopped, and how long closing waits for it
# (it is at most decoding one frame then).
_PREFETCH_POLL_S = 0.05
_PREFETCH_JOIN_TIMEOUT_S = 30.0

T = TypeVar("T")


class VideoError(Exception):
    """A video that cannot be read or written; says which file and why."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class VideoNotFoundError(VideoError, FileNotFoundError):
    pass


def rotate_upright(frame: np.ndarray, rotation_deg: float) -> np.ndarray:
    """Apply a display-matrix rotation (counter-clockwise degrees, as FFmpeg reports it) to the pixels."""
    quarter_turns = int(round(rotation_deg / QUARTER_TURN_DEG)) % 4
    if quarter_turns == 0:
        return frame
    return np.ascontiguousarray(np.rot90(frame, k=quarter_turns))


@dataclass(frozen=True)
class VideoInfo:
    path: str
    width: int  # as displayed, after rotation
    height: int
    fps: float
    frame_count: int  # 0 when the container does not say
    codec: str
    rotation_deg: int
    backend: str  # "pyav" or "opencv"

    @property
    def duration_s(self) -> float:
        return self.frame_count / self.fps if self.frame_count and self.fps > 0 else math.nan


def _check_file(path: Path) -> None:
    if not path.exists():
        raise VideoNotFoundError(path, "file not found")
    if not path.is_file():
        raise VideoError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise VideoError(path, "file is empty (0 bytes)")


class VideoReader:
    """Iterates (frame_bgr, timestamp_s) over a video file; use as a context manager or call close().

    A file that ends well before the frame count in its header (a truncated upload or copy) raises a
    VideoError after its last readable frame, unless ``allow_truncated`` (then it is logged).
    """

    def __init__(self, path: str | os.PathLike[str], backend: str = "auto", allow_truncated: bool = False) -> None:
        self.allow_truncated = allow_truncated
        if backend not in ("auto", "pyav", "opencv"):
            raise ValueError(f"backend must be 'auto', 'pyav' or 'opencv', got {backend!r}")
        self.path = Path(path)
        _check_file(self.path)
        self._container = None
        self._capture = None
        errors = []
        if backend in ("auto", "pyav"):
            try:
                self.info = self._open_pyav()
            except VideoError as exc:
                errors.append(f"PyAV: {exc.reason}")
        if self._container is None and backend in ("auto", "opencv"):
            try:
                self.info = self._open_opencv()
            except VideoError as exc:
                errors.append(f"OpenCV: {exc.reason}")
        if self._container is None and self._capture is None:
            raise VideoError(self.path, "cannot be read as video (" + "; ".join(errors) + ")")
        if errors:
            logger.info("%s: read with OpenCV after %s", self.path, errors[0])

    def _open_pyav(self) -> VideoInfo:
        import av

        try:
            container = av.open(str(self.path), mode="r")
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
            raise VideoError(self.path, f"not a readable container ({exc})") from exc
        if not container.streams.video:
            container.close()
            raise VideoError(self.path, "has no video stream")
        stream = container.streams.video[0]
        # Let FFmpeg decode on several threads; frames still come out in presentation order.
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else DEFAULT_FPS
        rotation = 0
        try:
            # The display matrix is in the stream side data; PyAV exposes it on each decoded frame.
            first = next(container.decode(stream))
            rotation = int(round(first.rotation or 0))
        except StopIteration:
            container.close()
            raise VideoError(self.path, "contains no decodable video frame") from None
        except (av.error.FFmpegError, ValueError) as exc:
            container.close()
            raise VideoError(self.path, f"first frame cannot be decoded ({exc})") from exc
        container.seek(0)
        w, h = stream.codec_context.width, stream.codec_context.height
        if (rotation // QUARTER_TURN_DEG) % 2:
            w, h = h, w
        self._container, self._stream = container, stream
        return VideoInfo(str(self.path), w, h, fps, int(stream.frames or 0), stream.codec_context.name, rotation, "pyav")

    def _open_opencv(self) -> VideoInfo:
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise VideoError(self.path, "OpenCV cannot open it")
        # OpenCV's FFmpeg backend applies the rotation metadata itself (CAP_PROP_ORIENTATION_AUTO).
        ok, frame = cap.read()
        if not ok or frame is None:
            cap.release()
            raise VideoError(self.path, "contains no decodable video frame")
        cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        fps = cap.get(cv2.CAP_PROP_FPS)
        fps = fps if fps and math.isfinite(fps) and fps > 0 else DEFAULT_FPS
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        fourcc = int(cap.get(cv2.CAP_PROP_FOURCC) or 0)
        codec = "".join(chr((fourcc >> (8 * i)) & 0xFF) for i in range(4)).strip("\x00 ") or "unknown"
        self._capture = cap
        return VideoInfo(str(self.path), frame.shape[1], frame.shape[0], fps, max(count, 0), codec, 0, "opencv")

    def __iter__(self) -> Iterator[tuple[np.ndarray, float]]:
        if self._container is not None:
            yield from self._iter_pyav()
        else:
            yield from self._iter_opencv()

    def _iter_pyav(self) -> Iterator[tuple[np.ndarray, float]]:
        import av

        first_time: float | None = None
        last_t = -math.inf
        index = 0
        try:
            for frame in self._container.decode(self._stream):
                img = rotate_upright(frame.to_ndarray(format="bgr24"), self.info.rotation_deg)
                t = frame.time
                if t is None:
                    t_s = index / self.info.fps
                else:
                    first_time = t if first_time is None else first_time
                    t_s = t - first_time
                # Broken or variable-rate files can repeat or reorder timestamps; downstream filters and
                # counters need time to move forward.
                if t_s <= last_t:
                    t_s = last_t + 1.0 / self.info.fps
                last_t = t_s
                index += 1
                yield img, float(t_s)
        except av.error.FFmpegError as exc:
            raise VideoError(self.path, f"decoding failed after {index} frames, the file may be truncated ({exc})") from exc
        self._check_complete(index)

    def _iter_opencv(self) -> Iterator[tuple[np.ndarray, float]]:
        index = 0
        last_t = -math.inf
        while True:
            ok, frame = self._capture.read()
            if not ok or frame is None:
                break
            t_s = self._capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0 if index else 0.0
            if not math.isfinite(t_s) or t_s <= last_t:
                t_s = index / self.info.fps
                t_s = max(t_s, last_t + 1.0 / self.info.fps)
            last_t = t_s
            index += 1
            yield frame, float(t_s)
        self._check_complete(index)

    def _check_complete(self, decoded: int) -> None:
        if decoded == 0:
            raise VideoError(self.path, "contains no decodable video frame")
        promised = self.info.frame_count
        slack = max(TRUNCATION_SLACK_FRAMES, TRUNCATION_SLACK_FRACTION * promised)
        if promised and decoded < promised - slack:
            reason = f"truncated: only {decoded} of the {promised} frames its header lists could be decoded"
            if not self.allow_truncated:
                raise VideoError(self.path, reason)
            logger.warning("%s: %s", self.path, reason)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    with VideoReader(path) as reader:
        return reader.info


def read_frames(path: str | os.PathLike[str], every: int = 1, max_frames: int | None = None,
                max_side_px: int | None = None) -> Iterator[tuple[np.ndarray, float]]:
    """Every ``every``-th frame (at most ``max_frames``), optionally downscaled so its longer side fits."""
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    taken = 0
    with VideoReader(path) as reader:
        for i, (frame, t_s) in enumerate(reader):
            if i % every:
                continue
            if max_side_px is not None and max(frame.shape[:2]) > max_side_px:
                frame = resize_to_fit(frame, max_side_px)
            yield frame, t_s
            taken += 1
            if max_frames is not None and taken >= max_frames:
                return


class _Finished:
    """Put by the reader thread after the last item: the source is exhausted, or it raised ``error``."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


def _put(items: queue.Queue, item, stop: threading.Event) -> bool:
    """Queue ``item`` unless the consumer stops first; False when it did."""
    while not stop.is_set():
        try:
            items.put(item, timeout=_PREFETCH_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def _read_ahead(source: Iterable, items: queue.Queue, stop: threading.Event) -> None:
    iterator = None
    try:
        iterator = iter(source)
        for item in iterator:
            if not _put(items, item, stop):
                return
        _put(items, _Finished(), stop)
    except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it in its own thread
        _put(items, _Finished(exc), stop)
    finally:
        # A generator is closed in the thread that ran it (from another one it would be "already executing").
        close = getattr(iterator, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # closing after the end or an error: nothing left to report it to
                logger.debug("closing the prefetched source failed", exc_info=True)


def prefetch(source: Iterable[T], depth: int = DEFAULT_PREFETCH_FRAMES) -> Iterator[T]:
    """``source``'s items, in order, produced on a reader thread that stays up to ``depth`` items ahead.

    An exception raised by ``source`` (e.g. the VideoError of a truncated file) is raised here, in the
    consumer's thread, after the items that came before it. The thread starts with the first item asked for and
    ends with the source; a consumer that stops early should close the returned generator (``with
    contextlib.closing(prefetch(...))``, or ``.close()``): that stops the thread and waits for it, so the source
    (a VideoReader) can be closed safely afterwards. Dropping the generator closes it too.
    """
    if not (isinstance(depth, int) and depth >= 1):
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
    return _prefetched(source, depth)


def _prefetched(source: Iterable[T], depth: int) -> Iterator[T]:
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    thread = threading.Thread(target=_read_ahead, args=(source, items, stop), name=PREFETCH_THREAD_NAME, daemon=True)
    thread.start()
    try:
        while True:
            try:
                item = items.get(timeout=_PREFETCH_POLL_S)
            except queue.Empty:
                if not thread.is_alive() and items.empty():
                    raise RuntimeError("the prefetch reader thread ended without a result") from None
                continue
            if isinstance(item, _Finished):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        stop.set()
        # Unblock a reader waiting for room; it then sees ``stop`` and ends.
        while True:
            try:
                items.get_nowait()
            except queue.Empty:
                break
        thread.join(_PREFETCH_JOIN_TIMEOUT_S)
        if thread.is_alive():
            logger.warning("the video reader thread did not stop within %.0f s", _PREFETCH_JOIN_TIMEOUT_S)


def resize_to_fit(frame: np.ndarray, max_side_px: int) -> np.ndarray:
    h, w = frame.shape[:2]
    scale = max_side_px / float(max(h, w))
    return cv2.resize(frame, (max(int(round(w * scale)), 1), max(int(round(h * scale)), 1)), interpolation=cv2.INTER_AREA)


class VideoWriter:
    """Writes BGR frames as H.264 yuv420p .mp4 at a constant frame rate; the size is set by the first frame.

    The file is complete under its final name only after ``close()`` (or leaving the ``with`` block
    without an error); on an error the partial file is removed.
    """

    def __init__(self, path: str | os.PathLike[str], fps: float = DEFAULT_FPS, crf: int = DEFAULT_CRF,
                 preset: str = DEFAULT_PRESET, threads: int = 2) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() != ".mp4":
            raise ValueError(f"output must be an .mp4 file (H.264 for browsers), got {self.path}")
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be > 0, got {fps}")
        if not self.path.parent.is_dir():
            raise VideoNotFoundError(self.path.parent, "output folder does not exist")
        self.fps = fps
        self.crf = int(crf)
        self.preset = preset
        self.threads = int(threads)
        self.frames_written = 0
        self._tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.partial.mp4")
        self._container = None
        self._stream = None
        self._size: tuple[int, int] | None = None  # (w, h) of the input frames
        self._closed = False

    def _open(self, width: int, height: int) -> None:
        import av

        self._container = av.open(str(self._tmp), mode="w", format="mp4",
                                  options={"movflags": "+faststart"})
        # A rational rate keeps 29.97 and friends exact.
        rate = Fraction(self.fps).limit_denominator(1001)
        stream = self._container.add_stream("libx264", rate=rate)
        # yuv420p needs even sizes: odd frames are padded by one replicated row/column.
        stream.width, stream.height = width + width % 2, height + height % 2
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(self.crf), "preset": self.preset}
        stream.codec_context.thread_count = self.threads
        self._stream = stream
        self._size = (width, height)

    def write(self, frame_bgr: np.ndarray) -> None:
        import av

        if self._closed:
            raise VideoError(self.path, "writer is closed")
        frame_bgr = as_bgr_frame(frame_bgr, "frame_bgr")
        h, w = frame_bgr.shape[:2]
        if self._container is None:
            self._open(w, h)
        if (w, h) != self._size:
            raise ValueError(f"frame_bgr size {w}x{h} differs from the video's {self._size[0]}x{self._size[1]}")
        if w % 2 or h % 2:
            frame_bgr = cv2.copyMakeBorder(frame_bgr, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)
        frame = av.VideoFrame.from_ndarray(frame_bgr, format="bgr24")
        frame.pts = self.frames_written
        try:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        except av.error.FFmpegError as exc:
            self.abort()
            raise VideoError(self.path, f"encoding failed ({exc})") from exc
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file and give it its final name."""
        if self._closed:
            return
        self._closed = True
        if self._container is None:
            raise VideoError(self.path, "no frames were written")
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        os.replace(self._tmp, self.path)
        logger.debug("wrote %s (%d frames)", self.path, self.frames_written)

    def abort(self) -> None:
        """Drop the partial file."""
        self._closed = True
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - the file is being thrown away anyway
                logger.debug("closing a partial video failed", exc_info=True)
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()

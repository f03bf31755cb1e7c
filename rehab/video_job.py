"""One video through the one pipeline into one complete output folder: the unit every batch engine runs.

``process_video`` builds a video's outputs (annotated video, frames table, summary.json, report, DONE.json;
names in rehab.outputs) in a staging folder ``<out>/.partial/<name>.<pid>/`` and renames the whole folder to
``<out>/<name>`` only once every file (DONE.json last) is written and flushed to disk: a folder under its final
name is complete. ``rehab.outputs.check_complete`` says whether an existing folder is complete for the same video,
model and options (what a re-run skips). The video page runs this function on an upload; rehab.batch and
rehab.batch_ray schedule it over many videos.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rehab import __version__
from rehab.analysis.exercises import get_exercise
from rehab.analysis.summary import (
    JointStatistics,
    Processing,
    SourceVideo,
    Truncation,
    VideoSummary,
    angle_statistics,
)
from rehab.outputs import (
    FRAMES_CSV,
    FRAMES_PARQUET,
    OUTPUT_FILES,
    REPORT_HTML,
    REPORT_PDF,
    STAGING_DIR,
    SUMMARY_JSON,
    VIDEO_FILE,
    FrameTableWriter,
    clean_file_name,
    frame_columns,
    frame_row,
    fsync_path,
    sha256_file,
    write_completion_record,
    write_json,
)
from rehab.settings import RuntimeSettings

if TYPE_CHECKING:
    import pandas as pd

    from rehab.runtime.model import PoseModel

logger = logging.getLogger(__name__)

# A worker reports its frame count this often; the parent redraws the bars from these reports.
PROGRESS_EVERY_FRAMES = 5
# process_video asks its should_stop callback this often.
STOP_CHECK_EVERY_FRAMES = 10
SNAPSHOT_MAX_SIDE_PX = 640
SNAPSHOT_JPEG_QUALITY = 80
MIN_SIDE_PX = 32

ProgressCallback = Callable[[int, int], None]  # (frames done, frames expected or 0 when unknown)

class OutputFolderError(Exception):
    """A video's output folder cannot be (re)placed: it is a file, or holds files batch did not write."""


class Cancelled(Exception):
    """process_video stopped because its ``should_stop`` callback said so (e.g. a Stop button)."""


@dataclass(frozen=True)
class BatchOptions:
    """How each video is processed. Everything here (but workers and progress) is part of what makes an
    existing output folder "complete": change it and the video is redone."""

    exercise: str | None = None
    settings: RuntimeSettings = field(default_factory=RuntimeSettings)
    # Only the first max_seconds of each video (None: all of it).
    max_seconds: float | None = None
    # Every stride-th frame (the annotated video then plays at fps / stride, at the same speed).
    stride: int = 1
    # Downscale frames whose longer side exceeds this before the pipeline (None: keep the resolution).
    max_side_px: int | None = None
    pdf: bool = True
    # Process the readable part of a truncated file (logged) instead of failing it.
    allow_truncated: bool = False
    workers: int = 1
    # Redo videos even when their outputs are complete.
    force: bool = False
    # Progress bars on stderr: None = when stderr is a terminal.
    progress: bool | None = None

    def __post_init__(self) -> None:
        if self.exercise is not None:
            try:
                get_exercise(self.exercise)
            except KeyError as exc:
                raise ValueError(exc.args[0]) from None
        if not isinstance(self.settings, RuntimeSettings):
            raise ValueError(f"settings must be a RuntimeSettings, got {type(self.settings).__name__}")
        if self.max_seconds is not None and not (math.isfinite(self.max_seconds) and self.max_seconds > 0):
            raise ValueError(f"max_seconds must be > 0 seconds (or None for whole videos), got {self.max_seconds}")
        if not (isinstance(self.stride, int) and self.stride >= 1):
            raise ValueError(f"stride must be an integer >= 1 (1 = every frame), got {self.stride!r}")
        if self.max_side_px is not None and self.max_side_px < MIN_SIDE_PX:
            raise ValueError(f"max_side_px must be >= {MIN_SIDE_PX} pixels (or None), got {self.max_side_px}")
        if not (isinstance(self.workers, int) and self.workers >= 1):
            raise ValueError(f"workers must be an integer >= 1, got {self.workers!r}")

    def fingerprint(self) -> dict[str, Any]:
        """The options that shape the outputs (JSON-ready)."""
        exercise = asdict(get_exercise(self.exercise)) if self.exercise else None
        return {"exercise": exercise, "settings": self.settings.to_dict(), "max_seconds": self.max_seconds,
                "stride": self.stride, "max_side_px": self.max_side_px, "pdf": self.pdf,
                "allow_truncated": self.allow_truncated}



class VideoStatus(StrEnum):
    DONE = "done"
    SKIPPED = "skipped"  # complete outputs already there
    FAILED = "failed"


@dataclass(frozen=True)
class VideoResult:
    source: str
    name: str
    status: VideoStatus
    output_dir: str
    frames: int = 0
    frames_with_pose: int = 0
    repetitions: int = 0
    elapsed_s: float = 0.0
    message: str = ""  # why it failed, or a note (e.g. why it was redone)
    truncated: str = ""  # "truncated: 28 of 100 frames" when only the readable part was processed

    @property
    def ok(self) -> bool:
        return self.status != VideoStatus.FAILED



# ----------------------------------------------------------------------------------------------
# completeness (the record itself: rehab.outputs)


def output_fingerprint(source_sha256: str, model_sha256: str, options: BatchOptions) -> dict[str, Any]:
    """What a complete output folder must have been made from: the same video, model and options."""
    return {"source_sha256": source_sha256, "model_sha256": model_sha256, **options.fingerprint()}


def required_files(options: BatchOptions) -> tuple[str, ...]:
    files = [VIDEO_FILE, FRAMES_CSV, FRAMES_PARQUET, SUMMARY_JSON, REPORT_HTML]
    if options.pdf:
        files.append(REPORT_PDF)
    return tuple(files)


def check_output_target(folder: Path) -> None:
    """Raise OutputFolderError when ``folder`` exists but is not a batch output folder we may replace."""
    if not (folder.exists() or folder.is_symlink()):
        return
    if folder.is_symlink() or not folder.is_dir():
        raise OutputFolderError(f"cannot write outputs to {folder}: it exists and is not a folder; "
                                "move it away or choose another --out")
    foreign = sorted(p.name for p in folder.iterdir() if p.name not in OUTPUT_FILES)
    if foreign:
        shown = ", ".join(foreign[:3]) + (" ..." if len(foreign) > 3 else "")
        raise OutputFolderError(f"cannot replace {folder}: it holds files rehab did not write ({shown}); "
                                "move them away or choose another --out")


# ----------------------------------------------------------------------------------------------
# one video



def expected_frames(frame_count: int, fps: float, options: BatchOptions) -> int:
    """Frames the pipeline will see (0 when the container does not say and no time limit is set)."""
    n = frame_count
    if options.max_seconds is not None and fps > 0:
        limit = math.ceil(options.max_seconds * fps - 1e-9)
        n = min(n, limit) if n else limit
    return math.ceil(n / options.stride) if n else 0



def model_record(model: PoseModel, model_sha256: str) -> dict[str, Any]:
    info = model.info
    return {"file": str(model.path), "sha256": model_sha256, "name": info.name, "precision": info.precision,
            "backbone": info.backbone, "input_size": list(info.input_size), "joint_names": list(info.joint_names),
            "flip_test": info.flip_test, "training": dict(info.training), "metrics": dict(info.metrics),
            "exported_at": info.exported_at, "code_version": info.code_version, "providers": list(model.providers)}


def truncation_note(decoded_frames: int, header_frames: int) -> str:
    """What the table, summary and report say about a truncated file processed with allow_truncated."""
    return f"truncated: {decoded_frames} of {header_frames} frames"


@dataclass(frozen=True)
class _Record:
    """What the summary records beside the pipeline's results."""

    name: str  # the output folder's
    file_name: str | None  # the source's name as the user knows it (None: its file name)
    source_sha256: str
    model: Mapping[str, Any]  # model_record


@dataclass(frozen=True)
class _Analysis:
    # Time and angle columns only (what the report plots); the whole table is in the staging folder.
    frames: pd.DataFrame
    summary: VideoSummary
    snapshot_jpeg: bytes | None


def _analyse(source: Path, staging: Path, model: PoseModel, options: BatchOptions, record: _Record, threads: int,
             progress: ProgressCallback | None, should_stop: Callable[[], bool] | None,
             prefetch_frames: int | None = None) -> _Analysis:
    """Run the pipeline over ``source``: annotated video and frames table into ``staging``, summary, snapshot.

    Frames are decoded on a reader thread ``prefetch_frames`` ahead (None: the default; 0: in this loop).
    Rows are streamed to the table files (FrameTableWriter), so memory does not grow with the video's length."""
    import cv2

    from rehab.core.angles import ANGLES
    from rehab.pipeline import STAGES, Pipeline
    from rehab.runtime.video import (
        DEFAULT_PREFETCH_FRAMES,
        TRUNCATION_SLACK_FRACTION,
        TRUNCATION_SLACK_FRAMES,
        VideoReader,
        VideoWriter,
        prefetch,
        resize_to_fit,
    )

    t_start = time.perf_counter()
    pipeline = Pipeline(model, options.settings, options.exercise)
    joint_names = list(model.info.joint_names)

    def columns(first_row: Mapping[str, Any] | None) -> list[str]:
        return frame_columns(joint_names, [a.name for a in ANGLES if first_row and f"{a.name}_deg" in first_row])

    table = FrameTableWriter(staging / FRAMES_CSV, staging / FRAMES_PARQUET, columns)
    stage_ms: Counter[str] = Counter()
    decoded = 0
    stopped_early = False
    snapshot = None
    last_frame = None
    size: tuple[int, int] | None = None
    try:
        with VideoReader(source, allow_truncated=options.allow_truncated) as reader:
            info = reader.info
            expected = expected_frames(info.frame_count, info.fps, options)
            snapshot_at = expected // 2
            if progress is not None:
                progress(0, expected)
            depth = DEFAULT_PREFETCH_FRAMES if prefetch_frames is None else prefetch_frames
            # The reader thread is stopped (closing) before the writer and the reader close.
            with VideoWriter(staging / VIDEO_FILE, fps=info.fps / options.stride, threads=threads) as writer, \
                    contextlib.closing(prefetch(reader, depth) if depth > 0 else iter(reader)) as frames_in:
                for i, (frame, t_s) in enumerate(frames_in):
                    if options.max_seconds is not None and t_s >= options.max_seconds:
                        stopped_early = True
                        break
                    decoded = i + 1
                    if i % options.stride:
                        continue
                    if options.max_side_px is not None and max(frame.shape[:2]) > options.max_side_px:
                        frame = resize_to_fit(frame, options.max_side_px)
                    result = pipeline.process(frame, t_s)
                    writer.write(result.frame_bgr)
                    table.add(frame_row(result, source_frame=i))
                    stage_ms.update(result.timings_ms)
                    size = (result.frame_bgr.shape[1], result.frame_bgr.shape[0])
                    last_frame = result.frame_bgr
                    if result.frame_index == snapshot_at:
                        snapshot = last_frame
                    n = table.rows
                    if progress is not None and n % PROGRESS_EVERY_FRAMES == 0:
                        progress(n, expected)
                    if should_stop is not None and n % STOP_CHECK_EVERY_FRAMES == 0 and should_stop():
                        raise Cancelled(f"processing of {source} was stopped after {n} frames")
        table.close()
    except BaseException:
        table.abort()
        raise
    if progress is not None:
        progress(table.rows, table.rows)
    truncated = None
    promised = info.frame_count
    if (not stopped_early and options.allow_truncated and promised
            and decoded < promised - max(TRUNCATION_SLACK_FRAMES, TRUNCATION_SLACK_FRACTION * promised)):
        truncated = Truncation(decoded_frames=decoded, header_frames=promised,
                               message=truncation_note(decoded, promised))

    angle_names = [c[:-len("_deg")] for c in table.columns if c.endswith("_deg")]
    frames = table.read_columns(["time_s", *(f"{a}_deg" for a in angle_names)])
    snapshot = snapshot if snapshot is not None else last_frame
    snapshot_jpeg = None
    if snapshot is not None:
        small = resize_to_fit(snapshot, SNAPSHOT_MAX_SIDE_PX) if max(snapshot.shape[:2]) > SNAPSHOT_MAX_SIDE_PX else snapshot
        ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, SNAPSHOT_JPEG_QUALITY])
        snapshot_jpeg = buf.tobytes() if ok else None

    n = table.rows_written
    with_pose = int(table.sum("person_found"))
    times = frames["time_s"].to_numpy() if n else np.zeros(0)
    frame_period_s = options.stride / info.fps if info.fps > 0 else 0.0
    elapsed = time.perf_counter() - t_start
    summary = VideoSummary(
        name=record.name,
        source=SourceVideo(
            file=str(source), file_name=record.file_name or source.name, size_bytes=source.stat().st_size,
            width=info.width, height=info.height, fps=info.fps, codec=info.codec, rotation_deg=info.rotation_deg,
            frame_count=info.frame_count, duration_s=info.duration_s, decoded_frames=decoded,
            sha256=record.source_sha256),
        truncated=truncated,
        processing=Processing(
            frames=n, frames_with_pose=with_pose, pose_fraction=with_pose / n if n else math.nan,
            first_time_s=float(times[0]) if n else math.nan,
            duration_s=float(times[-1] - times[0] + frame_period_s) if n else 0.0,
            output_fps=info.fps / options.stride, frame_width=size[0] if size else 0,
            frame_height=size[1] if size else 0, stride=options.stride, max_seconds=options.max_seconds,
            max_side_px=options.max_side_px, elapsed_s=elapsed, frames_per_s=n / elapsed if elapsed > 0 else math.nan,
            mean_stage_ms={s: stage_ms[s] / n for s in (*STAGES, "total")} if n else {}),
        exercise=pipeline.exercise,
        repetitions=tuple(pipeline.reps),
        session=pipeline.summary(),
        angles={a: angle_statistics(frames[f"{a}_deg"].to_numpy(dtype=np.float64)) for a in angle_names},
        joints={j: JointStatistics(reliable_fraction=table.mean(f"{j}_reliable"), mean_score=table.mean(f"{j}_score"))
                for j in joint_names},
        settings=options.settings.to_dict(),
        model=record.model,
        options=options.fingerprint(),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        rehab_version=__version__,
    )
    return _Analysis(frames=frames, summary=summary, snapshot_jpeg=snapshot_jpeg)


def _publish(staging: Path, final: Path) -> None:
    """Move the finished staging folder to its final name, replacing an incomplete or outdated one."""
    check_output_target(final)
    old = None
    if final.exists():
        old = staging.with_name(staging.name + ".old")
        os.replace(final, old)
    os.replace(staging, final)
    fsync_path(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def staging_dir(output_dir: Path) -> Path:
    return output_dir.parent / STAGING_DIR / f"{output_dir.name}.{os.getpid()}"


def process_video(source: str | os.PathLike[str], output_dir: str | os.PathLike[str], model: PoseModel,
                  options: BatchOptions | None = None, progress: ProgressCallback | None = None, *,
                  model_sha256: str | None = None, source_sha256: str | None = None, threads: int | None = None,
                  should_stop: Callable[[], bool] | None = None, prefetch_frames: int | None = None,
                  source_name: str | None = None) -> VideoResult:
    """Process one video into ``output_dir`` (created complete, or not at all). Raises on failure:
    VideoError for unreadable video, OutputFolderError / OSError when the outputs cannot be written, Cancelled
    when ``should_stop()`` returns True (asked every few frames). ``progress(done, expected)`` is called every
    few frames; the checksums are computed here unless given; ``threads`` is for the video encoder. Frames are
    decoded on a reader thread up to ``prefetch_frames`` ahead of the pipeline (None: rehab.runtime.video's
    DEFAULT_PREFETCH_FRAMES; 0: decoded in the loop); the outputs are the same either way. ``source_name`` is
    the file's name as the user knows it, recorded in summary.json (e.g. an upload kept in a temporary file
    under another name); it is data, never part of a path."""
    from rehab.report import write_html, write_pdf

    options = options or BatchOptions()
    source, output_dir = Path(source), Path(output_dir)
    t0 = time.perf_counter()
    check_output_target(output_dir)
    model_sha256 = model_sha256 or sha256_file(model.path)
    source_sha256 = source_sha256 or sha256_file(source)
    threads = threads or max(1, os.cpu_count() or 1)
    staging = staging_dir(output_dir)
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        file_name = clean_file_name(source_name) if source_name is not None else None
        record = _Record(name=output_dir.name, file_name=file_name, source_sha256=source_sha256,
                         model=model_record(model, model_sha256))
        analysis = _analyse(source, staging, model, options, record, threads, progress, should_stop, prefetch_frames)
        frames = analysis.frames
        write_json(analysis.summary.to_dict(), staging / SUMMARY_JSON)
        # The report reads the summary as written (NaN as None), as any later reader does.
        summary = json.loads((staging / SUMMARY_JSON).read_text(encoding="utf-8"))
        write_html(staging / REPORT_HTML, summary, frames, snapshot_jpeg=analysis.snapshot_jpeg, video_file=VIDEO_FILE)
        if options.pdf:
            write_pdf(staging / REPORT_PDF, summary, frames, snapshot_jpeg=analysis.snapshot_jpeg)
        write_completion_record(staging, required_files(options),
                                output_fingerprint(source_sha256, model_sha256, options), __version__)
        _publish(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        with contextlib.suppress(OSError):
            staging.parent.rmdir()  # only when no other video is being staged there
    processing = summary["processing"]
    truncated = summary.get("truncated") or {}
    result = VideoResult(source=str(source), name=output_dir.name, status=VideoStatus.DONE, output_dir=str(output_dir),
                         frames=processing["frames"], frames_with_pose=processing["frames_with_pose"],
                         repetitions=len(summary["repetitions"]), elapsed_s=time.perf_counter() - t0,
                         truncated=truncated.get("message", ""))
    logger.debug("%s -> %s: %d frames (%d with a pose), %d repetitions in %.1f s", source, output_dir,
                result.frames, result.frames_with_pose, result.repetitions, result.elapsed_s)
    return result


def describe_error(exc: BaseException) -> str:
    """One clear line saying what went wrong (the video error names the file and the reason already)."""
    from rehab.runtime.video import VideoError

    if isinstance(exc, (VideoError, OutputFolderError)):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return f"{type(exc).__name__}: {exc}"


# ----------------------------------------------------------------------------------------------
# a job: what every batch engine (local processes, Ray) runs for one video


@dataclass(frozen=True)
class Job:
    index: int
    source: str
    output_dir: str
    options: BatchOptions
    source_sha256: str
    model_sha256: str
    note: str = ""


def failed_result(job_or_input, output_dir: Path | str, message: str, elapsed_s: float = 0.0) -> VideoResult:
    source = str(job_or_input.source)
    return VideoResult(source=source, name=Path(output_dir).name, status=VideoStatus.FAILED, output_dir=str(output_dir),
                       elapsed_s=elapsed_s, message=message)


def run_job(job: Job, model: PoseModel, threads: int, progress: ProgressCallback | None) -> VideoResult:
    """process_video, with any failure turned into a failed result (one bad video never stops the others)."""
    t0 = time.perf_counter()
    try:
        result = process_video(job.source, job.output_dir, model, job.options, progress,
                               model_sha256=job.model_sha256, source_sha256=job.source_sha256, threads=threads)
        return replace(result, message=job.note)
    except Exception as exc:  # noqa: BLE001 - every failure becomes that video's reason, the batch goes on
        logger.debug("processing %s failed", job.source, exc_info=True)
        return failed_result(job, job.output_dir, describe_error(exc), time.perf_counter() - t0)


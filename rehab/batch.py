"""Batch processing of recorded sessions: every video of a folder through the one pipeline, nothing ever lost.

For each video ``<out>/<name>/`` receives:

- ``annotated.mp4``   H.264, anonymised, skeleton + angles + repetitions drawn (the pipeline's frames);
- ``frames.csv`` and ``frames.parquet``   one row per processed frame: time, keypoints, scores, every angle;
- ``summary.json``    repetitions (range of motion, duration, symmetry), per-angle statistics, frames with a
  pose, the source file, the model and the settings used;
- ``report.html``     a self-contained page for the clinician (``report.pdf`` too unless turned off);
- ``DONE.json``       the completion record: the options that produced the folder and the size and SHA-256 of
  every file above.

Nothing is lost, ever: a video's outputs are built in ``<out>/.partial/<name>.<pid>/`` and the whole folder is
renamed to ``<out>/<name>`` only once every file (DONE.json last) is written and flushed to disk. So a folder
under its final name is complete, and a run killed at any moment (even by SIGKILL) leaves at most staging
folders, which the next run deletes. A re-run skips videos whose folder is complete for the same options (its
DONE.json matches and every file's checksum verifies) and redoes the rest. One run at a time may write into an
output folder (an advisory lock, released by the OS even when the holder is killed).

Videos run in parallel in worker processes (spawned: ONNX Runtime sessions cannot be pickled or forked safely),
each loading the model once with ``cpu_count // workers`` threads. A video that fails (unreadable, truncated,
no frames, no room to write) is recorded with its reason and the others go on; a worker process that dies
(out of memory, a decoder crash) costs only the video it was on, which is retried once on its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import multiprocessing
import os
import re
import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from queue import Empty
from typing import TYPE_CHECKING, Any

import numpy as np

from rehab import __version__
from rehab.analysis.exercises import get_exercise
from rehab.analysis.summary import rep_rows
from rehab.settings import RuntimeSettings

if TYPE_CHECKING:
    import pandas as pd

    from rehab.runtime.model import PoseModel

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".3gp"})
VIDEO_FILE = "annotated.mp4"
FRAMES_CSV = "frames.csv"
FRAMES_PARQUET = "frames.parquet"
SUMMARY_JSON = "summary.json"
REPORT_HTML = "report.html"
REPORT_PDF = "report.pdf"
DONE_FILE = "DONE.json"
# Everything batch may write into a video's folder; a folder holding anything else is not ours to replace.
OUTPUT_FILES = (VIDEO_FILE, FRAMES_CSV, FRAMES_PARQUET, SUMMARY_JSON, REPORT_HTML, REPORT_PDF, DONE_FILE)
STAGING_DIR = ".partial"
LOCK_FILE = ".rehab-batch.lock"
SUMMARY_SCHEMA = "rehab.batch.summary/1"
DONE_SCHEMA = "rehab.batch.done/1"
STATUSES = ("done", "skipped", "failed")

# A worker reports its frame count this often; the parent redraws the bars from these reports.
PROGRESS_EVERY_FRAMES = 5
# process_video asks its should_stop callback this often.
STOP_CHECK_EVERY_FRAMES = 10
# A worker checks this often that the batch that started it is still alive, and exits when it is not: a
# killed run must not leave orphans computing (or idling for ever, holding the output pipes open).
PARENT_CHECK_INTERVAL_S = 0.5
EXIT_ORPHANED = 3
POLL_INTERVAL_S = 0.1
SNAPSHOT_MAX_SIDE_PX = 640
SNAPSHOT_JPEG_QUALITY = 80
MIN_SIDE_PX = 32
HASH_BLOCK_BYTES = 1 << 20
CSV_FLOAT_FORMAT = "%.4f"
# Frame rows go to frames.csv / frames.parquet this many at a time: the table's memory is one chunk, however
# long the video (a row is a dict of ~80 values, ~7 KB with 16 joints: an hour at 30 fps held whole was ~0.8 GB).
FRAME_CHUNK_ROWS = 512
# Longest file name kept as data (most file systems' limit), and the longest suffix kept when shortening it.
MAX_FILE_NAME_CHARS = 255
MAX_SUFFIX_CHARS = 16
_UNSAFE_NAME_CHARS = re.compile(r'[<>:"/\\|?*\x00-\x1f]')


class BatchError(Exception):
    """The batch as a whole cannot run (no inputs, an output folder that cannot be written, a run in progress)."""


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


@dataclass(frozen=True)
class VideoInput:
    source: Path  # as given or found in a given folder
    name: str  # the output folder's name


@dataclass(frozen=True)
class VideoResult:
    source: str
    name: str
    status: str  # "done", "skipped" (complete outputs already there) or "failed"
    output_dir: str
    frames: int = 0
    frames_with_pose: int = 0
    repetitions: int = 0
    elapsed_s: float = 0.0
    message: str = ""  # why it failed, or a note (e.g. why it was redone)
    truncated: str = ""  # "truncated: 28 of 100 frames" when only the readable part was processed

    @property
    def ok(self) -> bool:
        return self.status != "failed"


@dataclass(frozen=True)
class BatchResult:
    results: tuple[VideoResult, ...]
    elapsed_s: float
    workers: int

    def with_status(self, status: str) -> list[VideoResult]:
        return [r for r in self.results if r.status == status]

    @property
    def failed(self) -> list[VideoResult]:
        return self.with_status("failed")

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def frames_processed(self) -> int:
        return sum(r.frames for r in self.with_status("done"))

    @property
    def videos_per_minute(self) -> float:
        done = len(self.with_status("done"))
        return done * 60.0 / self.elapsed_s if self.elapsed_s > 0 else math.nan

    @property
    def frames_per_second(self) -> float:
        return self.frames_processed / self.elapsed_s if self.elapsed_s > 0 else math.nan


ProgressCallback = Callable[[int, int], None]  # (frames done, frames expected or 0 when unknown)


# ----------------------------------------------------------------------------------------------
# inputs and names


def discover_videos(paths: Iterable[str | os.PathLike[str]], exclude: Iterable[str | os.PathLike[str]] = ()) -> list[VideoInput]:
    """The videos named by ``paths``: files as given (any extension, missing ones too, so that they fail
    with a reason), folders searched recursively for video files (hidden files and folders, and anything
    under ``exclude``, e.g. the output folder, are left out). Each gets a unique output folder name."""
    excluded = [Path(p).resolve() for p in exclude]
    found: list[tuple[Path, Path]] = []  # (path, path relative to what was given)
    seen: set[Path] = set()

    def add(path: Path, relative: Path) -> None:
        key = path.resolve() if path.exists() else path.absolute()
        if key not in seen:
            seen.add(key)
            found.append((path, relative))

    for given in paths:
        path = Path(given)
        if path.is_dir():
            videos = sorted(
                f for f in path.rglob("*")
                if f.suffix.lower() in VIDEO_SUFFIXES and f.is_file()
                and not any(part.startswith(".") for part in f.relative_to(path).parts)
                and not any(f.resolve().is_relative_to(e) for e in excluded))
            if not videos:
                logger.warning("no video files (%s) in folder %s", ", ".join(sorted(VIDEO_SUFFIXES)), path)
            for f in videos:
                add(f, f.relative_to(path))
        else:
            add(path, Path(path.name))
    return _name_outputs(found)


def clean_file_name(name: str) -> str:
    """A file name as given by a user or a browser, safe to show and store as data: its last path component,
    control and path characters replaced, at most MAX_FILE_NAME_CHARS long."""
    last = re.split(r"[/\\]", str(name))[-1]
    # Tabs and line breaks become spaces; other control characters and path characters "_".
    cleaned = _UNSAFE_NAME_CHARS.sub("_", " ".join(last.split()))
    if len(cleaned) > MAX_FILE_NAME_CHARS:
        stem, suffix = os.path.splitext(cleaned)
        suffix = suffix if len(suffix) <= MAX_SUFFIX_CHARS else ""
        cleaned = stem[:MAX_FILE_NAME_CHARS - len(suffix)] + suffix
    return cleaned or "video"


def _safe_name(relative: Path) -> str:
    stem_parts = list(relative.parts[:-1]) + [Path(relative.parts[-1]).stem] if relative.parts else ["video"]
    name = _UNSAFE_NAME_CHARS.sub("_", "__".join(stem_parts)).strip().lstrip(".")
    return name or "video"


def _name_outputs(found: Sequence[tuple[Path, Path]]) -> list[VideoInput]:
    """Output folder names: the file name without its extension ("sub__name" inside a sub-folder); files that
    would share a name keep their extension, and if still shared get a hash of their path."""
    names = [_safe_name(rel) for _, rel in found]
    counts = Counter(names)
    names = [f"{n}_{rel.suffix.lstrip('.').lower()}" if counts[n] > 1 and rel.suffix else n
             for n, (_, rel) in zip(names, found)]
    counts = Counter(names)
    names = [f"{n}_{hashlib.sha1(str(p.absolute()).encode()).hexdigest()[:8]}" if counts[n] > 1 else n
             for n, (p, _) in zip(names, found)]
    return [VideoInput(source=p, name=n) for (p, _), n in zip(found, names)]


# ----------------------------------------------------------------------------------------------
# completeness


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(HASH_BLOCK_BYTES), b""):
            h.update(block)
    return h.hexdigest()


def output_fingerprint(source_sha256: str, model_sha256: str, options: BatchOptions) -> dict[str, Any]:
    """What a complete output folder must have been made from: the same video, model and options."""
    return {"source_sha256": source_sha256, "model_sha256": model_sha256, **options.fingerprint()}


def required_files(options: BatchOptions) -> tuple[str, ...]:
    files = [VIDEO_FILE, FRAMES_CSV, FRAMES_PARQUET, SUMMARY_JSON, REPORT_HTML]
    if options.pdf:
        files.append(REPORT_PDF)
    return tuple(files)


def check_complete(folder: str | os.PathLike[str], fingerprint: Mapping[str, Any] | None = None) -> str | None:
    """None when ``folder`` holds a complete, intact output (made from ``fingerprint`` when given); otherwise
    the reason it does not."""
    folder = Path(folder)
    done_path = folder / DONE_FILE
    if not done_path.is_file():
        return "no completion record" if folder.is_dir() else "no output folder"
    try:
        done = json.loads(done_path.read_text(encoding="utf-8"))
        files: Mapping[str, Mapping[str, Any]] = done["files"]
        recorded = done["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"unreadable completion record ({exc})"
    if done.get("schema") != DONE_SCHEMA:
        return f"completion record of another format ({done.get('schema')!r})"
    if fingerprint is not None and recorded != _json_ready(fingerprint):
        changed = sorted(k for k in set(recorded) | set(fingerprint) if recorded.get(k) != _json_ready(fingerprint.get(k)))
        return f"made with other inputs or options ({', '.join(changed)})"
    for name, meta in files.items():
        path = folder / name
        try:
            if path.stat().st_size != meta["size_bytes"]:
                return f"{name} has the wrong size"
            if sha256_file(path) != meta["sha256"]:
                return f"{name} fails its checksum"
        except OSError:
            return f"{name} is missing"
    return None


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


def frame_columns(joint_names: Sequence[str], angle_names: Sequence[str]) -> list[str]:
    cols = ["frame", "source_frame", "time_s", "person_found", "presence", "anonymization", "repetitions"]
    for j in joint_names:
        cols += [f"{j}_x_px", f"{j}_y_px", f"{j}_score", f"{j}_reliable"]
    cols += [f"{a}_deg" for a in angle_names]
    return cols


def frame_row(result, source_frame: int) -> dict[str, Any]:
    """One flat row of a FrameResult. Keypoints are NaN when no person was found; scores are the model's."""
    row: dict[str, Any] = {
        "frame": result.frame_index, "source_frame": source_frame, "time_s": result.timestamp_s,
        "person_found": result.person_found,
        # The model's probability that a person is there (NaN for a model without a presence output).
        "presence": math.nan if result.presence is None else float(result.presence),
        "anonymization": result.anonymization,
        "repetitions": result.reps.count if result.reps is not None else 0,
    }
    raw = result.raw_pose
    for i, name in enumerate(raw.joint_names):
        if result.pose is not None:
            row[f"{name}_x_px"], row[f"{name}_y_px"] = (float(v) for v in result.pose.keypoints_px[i])
        else:
            row[f"{name}_x_px"] = row[f"{name}_y_px"] = math.nan
        row[f"{name}_score"] = float(raw.scores[i])
        row[f"{name}_reliable"] = bool(result.reliable[i]) and result.pose is not None
    for name, value in result.angles_deg.items():
        row[f"{name}_deg"] = float(value)
    return row


class FrameTableWriter:
    """The frames table, streamed: rows are appended to a CSV and a Parquet file ``chunk_rows`` at a time.

    Both files are written under a ``.part`` name and renamed at :meth:`close`, so no reader sees half a
    table. ``columns(first_row)`` fixes the columns from the first row (``columns(None)``: those of a table
    with no rows). Column sums and counts are kept per chunk, so means (:meth:`mean`) need no second pass;
    :meth:`read_columns` reads a few columns back from the Parquet file once it is closed.
    """

    def __init__(self, csv_path: Path, parquet_path: Path,
                 columns: Callable[[Mapping[str, Any] | None], Sequence[str]] = lambda row: list(row or ()),
                 float_format: str | None = CSV_FLOAT_FORMAT, chunk_rows: int = FRAME_CHUNK_ROWS) -> None:
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
        self.csv_path, self.parquet_path = Path(csv_path), Path(parquet_path)
        self._columns_of = columns
        self.columns: list[str] | None = None
        self._float_format = float_format
        self._chunk_rows = chunk_rows
        self._pending: list[dict[str, Any]] = []
        self._csv = None
        self._parquet = None
        self._schema = None
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self.rows_written = 0
        self.closed = False

    def _part(self, path: Path) -> Path:
        return path.with_name(path.name + ".part")

    @property
    def rows(self) -> int:
        """Rows added so far (written or waiting in the current chunk)."""
        return self.rows_written + len(self._pending)

    def add(self, row: Mapping[str, Any]) -> None:
        if self.closed:
            raise ValueError(f"{self.csv_path} is closed: no more rows can be added")
        if self.columns is None:
            self.columns = list(self._columns_of(row))
        self._pending.append(dict(row))
        if len(self._pending) >= self._chunk_rows:
            self._flush()

    def _flush(self) -> None:
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.columns is None:
            self.columns = list(self._columns_of(None))
        if not self._pending and self._csv is not None:
            return
        chunk = pd.DataFrame(self._pending, columns=self.columns)
        self._pending = []
        first = self._csv is None
        if first:
            # Held open across chunks (closed by close() or abort()), like the Parquet writer.
            self._csv = open(self._part(self.csv_path), "w", encoding="utf-8", newline="")  # noqa: SIM115
        chunk.to_csv(self._csv, index=False, header=first, float_format=self._float_format)
        # Later chunks take the first chunk's column types (a column all NaN so far is still float).
        table = pa.Table.from_pandas(chunk, preserve_index=False, schema=None if first else self._schema)
        if first:
            self._schema = table.schema
            self._parquet = pq.ParquetWriter(self._part(self.parquet_path), table.schema)
        self._parquet.write_table(table)
        for name, total in chunk.sum(numeric_only=True).items():
            self._sums[name] = self._sums.get(name, 0.0) + float(total)
        for name, count in chunk.count().items():
            self._counts[name] = self._counts.get(name, 0) + int(count)
        self.rows_written += len(chunk)

    def mean(self, column: str) -> float:
        """Mean of a numeric or boolean column over the rows written (NaN left out; NaN when none)."""
        count = self._counts.get(column, 0)
        return self._sums.get(column, math.nan) / count if count else math.nan

    def sum(self, column: str) -> float:
        return self._sums.get(column, 0.0)

    def close(self) -> None:
        """Write the last chunk and put both files in place (an empty table still gets its header)."""
        if self.closed:
            return
        self._flush()
        self._csv.close()
        self._parquet.close()
        self._part(self.csv_path).replace(self.csv_path)
        self._part(self.parquet_path).replace(self.parquet_path)
        self.closed = True

    def abort(self) -> None:
        """Close and delete the partial files (the video failed or was stopped)."""
        self._pending = []
        for handle in (self._csv, self._parquet):
            if handle is not None:
                with contextlib.suppress(Exception):
                    handle.close()
        for path in (self.csv_path, self.parquet_path):
            with contextlib.suppress(OSError):
                self._part(path).unlink()
        self.closed = True

    def read_columns(self, columns: Sequence[str]) -> "pd.DataFrame":
        """These columns of the finished table, read back from its Parquet file."""
        import pandas as pd

        if not self.closed:
            raise ValueError(f"{self.parquet_path} is still being written")
        return pd.read_parquet(self.parquet_path, columns=list(columns))


def angle_statistics(values_deg: np.ndarray) -> dict[str, Any]:
    """Summary statistics of one angle over the frames where it was measured (NaN = not measured)."""
    v = np.asarray(values_deg, dtype=np.float64)
    ok = v[np.isfinite(v)]
    stats: dict[str, Any] = {"frames_measured": int(ok.size),
                             "measured_fraction": float(ok.size / v.size) if v.size else math.nan}
    if ok.size:
        p5, median, p95 = np.percentile(ok, [5, 50, 95])
        stats.update(mean_deg=float(ok.mean()), std_deg=float(ok.std()), min_deg=float(ok.min()),
                     p5_deg=float(p5), median_deg=float(median), p95_deg=float(p95), max_deg=float(ok.max()),
                     range_deg=float(ok.max() - ok.min()), p5_p95_range_deg=float(p95 - p5))
    else:
        stats.update({k: math.nan for k in ("mean_deg", "std_deg", "min_deg", "p5_deg", "median_deg", "p95_deg",
                                            "max_deg", "range_deg", "p5_p95_range_deg")})
    return stats


def model_record(model: "PoseModel", model_sha256: str) -> dict[str, Any]:
    info = model.info
    return {"file": str(model.path), "sha256": model_sha256, "name": info.name, "precision": info.precision,
            "backbone": info.backbone, "input_size": list(info.input_size), "joint_names": list(info.joint_names),
            "flip_test": info.flip_test, "training": dict(info.training), "metrics": dict(info.metrics),
            "exported_at": info.exported_at, "code_version": info.code_version, "providers": list(model.providers)}


def truncation_note(decoded_frames: int, header_frames: int) -> str:
    """What the table, summary and report say about a truncated file processed with allow_truncated."""
    return f"truncated: {decoded_frames} of {header_frames} frames"


@dataclass
class _Analysis:
    # Time and angle columns only (what the report plots); the whole table is in the staging folder.
    frames: "pd.DataFrame"
    summary: dict[str, Any]
    snapshot_jpeg: bytes | None


def _analyse(source: Path, staging: Path, model: "PoseModel", options: BatchOptions, threads: int,
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
        truncated = {"decoded_frames": decoded, "header_frames": promised,
                     "message": truncation_note(decoded, promised)}

    angle_names = [c[:-len("_deg")] for c in table.columns if c.endswith("_deg")]
    frames = table.read_columns(["time_s", *(f"{a}_deg" for a in angle_names)])
    snapshot = snapshot if snapshot is not None else last_frame
    snapshot_jpeg = None
    if snapshot is not None:
        small = resize_to_fit(snapshot, SNAPSHOT_MAX_SIDE_PX) if max(snapshot.shape[:2]) > SNAPSHOT_MAX_SIDE_PX else snapshot
        ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, SNAPSHOT_JPEG_QUALITY])
        snapshot_jpeg = buf.tobytes() if ok else None

    reps = pipeline.reps
    session = pipeline.summary()
    n = table.rows_written
    with_pose = int(table.sum("person_found"))
    times = frames["time_s"].to_numpy() if n else np.zeros(0)
    frame_period_s = options.stride / info.fps if info.fps > 0 else 0.0
    elapsed = time.perf_counter() - t_start
    summary: dict[str, Any] = {
        "schema": SUMMARY_SCHEMA,
        "source": {"file": str(source), "file_name": source.name, "size_bytes": source.stat().st_size,
                   "width": info.width, "height": info.height, "fps": info.fps, "codec": info.codec,
                   "rotation_deg": info.rotation_deg, "frame_count": info.frame_count, "duration_s": info.duration_s,
                   "decoded_frames": decoded},
        "truncated": truncated,
        "processing": {
            "frames": n, "frames_with_pose": with_pose, "pose_fraction": with_pose / n if n else math.nan,
            "first_time_s": float(times[0]) if n else math.nan,
            "duration_s": float(times[-1] - times[0] + frame_period_s) if n else 0.0,
            "output_fps": info.fps / options.stride, "frame_width": size[0] if size else 0,
            "frame_height": size[1] if size else 0, "stride": options.stride, "max_seconds": options.max_seconds,
            "max_side_px": options.max_side_px, "elapsed_s": elapsed, "frames_per_s": n / elapsed if elapsed > 0 else math.nan,
            "mean_stage_ms": {s: stage_ms[s] / n for s in (*STAGES, "total")} if n else {},
        },
        "exercise": asdict(pipeline.exercise) if pipeline.exercise is not None else None,
        "repetitions": rep_rows(reps),
        "session": session.to_dict() if session is not None else None,
        "angles": {a: angle_statistics(frames[f"{a}_deg"].to_numpy(dtype=np.float64)) for a in angle_names},
        "joints": {
            j: {"reliable_fraction": table.mean(f"{j}_reliable"), "mean_score": table.mean(f"{j}_score")}
            for j in joint_names},
        "settings": options.settings.to_dict(),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rehab_version": __version__,
    }
    return _Analysis(frames=frames, summary=summary, snapshot_jpeg=snapshot_jpeg)


def _json_ready(value: Any) -> Any:
    """JSON has no NaN or infinity: unmeasured values become null; tuples become lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return _json_ready(value.item())
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def _write_json(data: Mapping[str, Any], path: Path) -> None:
    path.write_text(json.dumps(_json_ready(data), indent=2, allow_nan=False) + "\n", encoding="utf-8")


def _fsync_path(path: Path) -> None:
    """Flush a file, or a folder's entries, to disk (so a power cut cannot undo a rename we relied on)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # folders cannot be opened on Windows; NTFS journals the rename
    try:
        os.fsync(fd)
    except OSError:
        logger.debug("fsync of %s not supported", path)
    finally:
        os.close(fd)


def _publish(staging: Path, final: Path) -> None:
    """Move the finished staging folder to its final name, replacing an incomplete or outdated one."""
    check_output_target(final)
    old = None
    if final.exists():
        old = staging.with_name(staging.name + ".old")
        os.replace(final, old)
    os.replace(staging, final)
    _fsync_path(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def staging_dir(output_dir: Path) -> Path:
    return output_dir.parent / STAGING_DIR / f"{output_dir.name}.{os.getpid()}"


def process_video(source: str | os.PathLike[str], output_dir: str | os.PathLike[str], model: "PoseModel",
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
        analysis = _analyse(source, staging, model, options, threads, progress, should_stop, prefetch_frames)
        summary = analysis.summary
        summary["name"] = output_dir.name
        summary["source"]["sha256"] = source_sha256
        summary["model"] = model_record(model, model_sha256)
        summary["options"] = options.fingerprint()
        if source_name is not None:
            summary["source"]["file_name"] = clean_file_name(source_name)
        frames = analysis.frames
        _write_json(summary, staging / SUMMARY_JSON)
        summary = json.loads((staging / SUMMARY_JSON).read_text(encoding="utf-8"))
        write_html(staging / REPORT_HTML, summary, frames, snapshot_jpeg=analysis.snapshot_jpeg, video_file=VIDEO_FILE)
        if options.pdf:
            write_pdf(staging / REPORT_PDF, summary, frames, snapshot_jpeg=analysis.snapshot_jpeg)
        files = {}
        for name in required_files(options):
            _fsync_path(staging / name)
            files[name] = {"size_bytes": (staging / name).stat().st_size, "sha256": sha256_file(staging / name)}
        done = {"schema": DONE_SCHEMA, "fingerprint": output_fingerprint(source_sha256, model_sha256, options),
                "files": files, "completed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "rehab_version": __version__}
        _write_json(done, staging / DONE_FILE)
        _fsync_path(staging / DONE_FILE)
        _fsync_path(staging)
        _publish(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        with contextlib.suppress(OSError):
            staging.parent.rmdir()  # only when no other video is being staged there
    processing = summary["processing"]
    truncated = summary.get("truncated") or {}
    result = VideoResult(source=str(source), name=output_dir.name, status="done", output_dir=str(output_dir),
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
# the batch


@dataclass(frozen=True)
class _Job:
    index: int
    source: str
    output_dir: str
    options: BatchOptions
    source_sha256: str
    model_sha256: str
    note: str = ""


def _failed(job_or_input, output_dir: Path | str, message: str, elapsed_s: float = 0.0) -> VideoResult:
    source = str(job_or_input.source)
    return VideoResult(source=source, name=Path(output_dir).name, status="failed", output_dir=str(output_dir),
                       elapsed_s=elapsed_s, message=message)


def _run_job(job: _Job, model: "PoseModel", threads: int, progress: ProgressCallback | None) -> VideoResult:
    """process_video, with any failure turned into a failed result (one bad video never stops the others)."""
    t0 = time.perf_counter()
    try:
        result = process_video(job.source, job.output_dir, model, job.options, progress,
                               model_sha256=job.model_sha256, source_sha256=job.source_sha256, threads=threads)
        return replace(result, message=job.note)
    except Exception as exc:  # noqa: BLE001 - every failure becomes that video's reason, the batch goes on
        logger.debug("processing %s failed", job.source, exc_info=True)
        return _failed(job, job.output_dir, describe_error(exc), time.perf_counter() - t0)


# Worker-process state: the model is loaded once per process by the pool initializer.
_worker: dict[str, Any] = {}


def _init_worker(model_path: str, threads: int, log_level: int, queue) -> None:
    import cv2

    from rehab.runtime.model import PoseModel

    logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
    threading.Thread(target=_exit_when_orphaned, name="orphan-watchdog", daemon=True).start()
    cv2.setNumThreads(threads)
    _worker.update(model=PoseModel.load(model_path, threads=threads, allow_spinning=False), threads=threads,
                   queue=queue)


def _exit_when_orphaned() -> None:
    """Exit this worker once the batch process that spawned it has died (e.g. SIGKILL): its partial outputs
    stay in the staging folder, which the next run deletes."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    while parent.is_alive():
        time.sleep(PARENT_CHECK_INTERVAL_S)
    os._exit(EXIT_ORPHANED)


def _worker_run(job: _Job) -> VideoResult:
    queue = _worker["queue"]

    def progress(done: int, total: int) -> None:
        queue.put((job.index, done, total))

    progress(0, 0)  # "started": tells the parent which videos a worker that dies may have been on
    return _run_job(job, _worker["model"], _worker["threads"], progress)


class _ProgressBars:
    """An overall bar (videos) and one bar per video being processed (frames), on stderr."""

    def __init__(self, enabled: bool, total_videos: int) -> None:
        self.enabled = enabled
        self._bars: dict[int, Any] = {}
        self._free_positions: list[int] = []
        self._overall = None
        if enabled:
            from tqdm.auto import tqdm

            self._tqdm = tqdm
            # shutil falls back to 80 columns where the terminal reports no size (a pty without a window).
            self._ncols = shutil.get_terminal_size().columns
            self._overall = tqdm(total=total_videos, desc="videos", unit="video", position=0, ncols=self._ncols)

    def update(self, index: int, name: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        bar = self._bars.get(index)
        if bar is None:
            position = self._free_positions.pop(0) if self._free_positions else len(self._bars) + 1
            bar = self._tqdm(total=total or None, desc=name, unit="frame", position=position, leave=False,
                             ncols=self._ncols)
            bar.position_ = position
            self._bars[index] = bar
        if total and bar.total != total:
            bar.total = total
        bar.update(max(0, done - bar.n))

    def finish(self, index: int, result: VideoResult) -> None:
        if not self.enabled:
            return
        bar = self._bars.pop(index, None)
        if bar is not None:
            self._free_positions.append(bar.position_)
            self._free_positions.sort()
            bar.close()
        self._overall.update(1)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        if self._overall is not None:
            self._overall.close()


def _log_result(result: VideoResult) -> None:
    """One line per video: the clear error line of a failure, or where the outputs are."""
    if result.status == "failed":
        # Video errors already start with the file's path.
        named = result.message.startswith(f"{result.source}: ")
        logger.error("FAILED %s", result.message if named else f"{result.source}: {result.message}")
    elif result.status == "skipped":
        logger.info("skipped %s: complete outputs in %s", result.source, result.output_dir)
    else:
        notes = "; ".join(filter(None, (result.truncated, result.message)))
        logger.info("done %s -> %s: %d frames (%d with a pose), %d repetitions in %.1f s%s", result.source,
                    result.output_dir, result.frames, result.frames_with_pose, result.repetitions, result.elapsed_s,
                    f" ({notes})" if notes else "")


class _OutputLock:
    """An exclusive advisory lock on the output folder; the OS drops it when the holder dies."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / LOCK_FILE
        self._file = None

    def __enter__(self) -> "_OutputLock":
        self._file = open(self.path, "a+")  # held for the whole batch
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks here; one run at a time is up to the user
            return self
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._file.close()
            raise BatchError(f"another `rehab process` is writing to {self.path.parent} (it holds {self.path}); "
                             "wait for it to finish or choose another --out") from None
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()


def _prepare_output_folder(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise BatchError(f"cannot write to the output folder {out_dir}: {exc.strerror or exc}") from None


def _plan(inputs: Sequence[VideoInput], out_dir: Path, options: BatchOptions, model_sha256: str
          ) -> tuple[list[_Job], dict[int, VideoResult]]:
    """Which videos need processing; the others are already complete (skipped) or cannot start (failed)."""
    jobs: list[_Job] = []
    settled: dict[int, VideoResult] = {}
    for index, item in enumerate(inputs):
        target = out_dir / item.name
        if not item.source.exists():
            settled[index] = _failed(item, target, f"{item.source}: file not found")
            continue
        if not item.source.is_file():
            settled[index] = _failed(item, target, f"{item.source}: not a regular file")
            continue
        try:
            source_sha256 = sha256_file(item.source)
            check_output_target(target)
        except OutputFolderError as exc:
            settled[index] = _failed(item, target, str(exc))
            continue
        except OSError as exc:
            settled[index] = _failed(item, target, f"{item.source}: cannot be read ({exc.strerror or exc})")
            continue
        fingerprint = output_fingerprint(source_sha256, model_sha256, options)
        reason = check_complete(target, fingerprint)
        if reason is None and not options.force:
            settled[index] = VideoResult(source=str(item.source), name=item.name, status="skipped",
                                         output_dir=str(target), message="outputs already complete")
            continue
        note = "redone: --force" if reason is None else (
            f"redone: earlier outputs {reason}" if target.exists() else "")
        jobs.append(_Job(index=index, source=str(item.source), output_dir=str(target), options=options,
                         source_sha256=source_sha256, model_sha256=model_sha256, note=note))
    return jobs, settled


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity mask: a container or taskset may allow fewer than the
    machine has)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        return max(1, os.cpu_count() or 1)


def capped_workers(workers: int) -> int:
    """``workers``, or the usable core count when more were asked for (logged): each worker process holds
    its own model and buffers (~0.4 GB), and more processes than cores only compete for them."""
    cores = usable_cpus()
    if workers > cores:
        logger.warning("%d workers asked for, but only %d CPU cores are usable here: using %d workers",
                       workers, cores, cores)
        return cores
    return workers


def worker_threads(workers: int) -> int:
    """Intra-op threads per worker: the usable cores shared out, at least one each."""
    return max(1, usable_cpus() // workers)


def run_batch(paths: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str],
              options: BatchOptions | None = None, model_path: str | os.PathLike[str] | None = None) -> BatchResult:
    """Process every video of ``paths`` (files and folders) into ``out_dir``; see the module docstring.

    Raises BatchError when nothing can run at all (no videos, output folder not writable, another run on
    the same folder), FileNotFoundError / ValueError for a missing or invalid model. Per-video failures are
    results with status "failed", never exceptions.
    """
    from rehab.runtime.model import DEFAULT_MODEL_PATH, PoseModel

    options = options or BatchOptions()
    options = replace(options, workers=capped_workers(options.workers))
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    inputs = discover_videos(paths, exclude=[out_dir])
    if not inputs:
        raise BatchError("no videos to process: " + ", ".join(str(p) for p in paths))
    threads = worker_threads(options.workers)
    # Loaded here even when workers load their own: a bad model is one clear error, not one per video.
    model = PoseModel.load(model_path, threads=threads, allow_spinning=False)
    resolved_model_path = Path(model_path) if model_path is not None else DEFAULT_MODEL_PATH
    model_sha256 = sha256_file(resolved_model_path)
    _prepare_output_folder(out_dir)
    show = options.progress if options.progress is not None else sys.stderr.isatty()
    with _OutputLock(out_dir), contextlib.ExitStack() as stack:
        if show:
            from tqdm.contrib.logging import logging_redirect_tqdm

            # Log lines are printed above the bars instead of through them.
            stack.enter_context(logging_redirect_tqdm())
        # Staging folders of earlier runs belong to runs that are gone (we hold the lock).
        shutil.rmtree(out_dir / STAGING_DIR, ignore_errors=True)
        jobs, results = _plan(inputs, out_dir, options, model_sha256)
        for result in results.values():
            _log_result(result)
        bars = _ProgressBars(show, len(inputs))
        for result in results.values():
            bars.finish(-1, result)
        names = {job.index: Path(job.output_dir).name for job in jobs}
        try:
            if options.workers == 1 or len(jobs) <= 1:
                if threads != worker_threads(1):
                    # One video left to do: it gets all the cores, not a worker's share.
                    threads = worker_threads(1)
                    model = PoseModel.load(model_path, threads=threads, allow_spinning=False)
                for job in jobs:
                    result = _run_job(job, model, threads, lambda d, t, i=job.index: bars.update(i, names[i], d, t))
                    results[job.index] = result
                    bars.finish(job.index, result)
                    _log_result(result)
            else:
                del model  # the workers load their own
                results.update(_run_in_workers(jobs, options.workers, resolved_model_path, threads, bars, names))
        finally:
            bars.close()
        shutil.rmtree(out_dir / STAGING_DIR, ignore_errors=True)
    batch = BatchResult(results=tuple(results[i] for i in range(len(inputs))), elapsed_s=time.perf_counter() - t0,
                        workers=options.workers)
    logger.info("batch: %d done, %d skipped, %d failed in %.1f s (%.2f videos/min, %.1f frames/s)",
                len(batch.with_status("done")), len(batch.with_status("skipped")), len(batch.failed),
                batch.elapsed_s, batch.videos_per_minute, batch.frames_per_second)
    return batch


def _run_in_workers(jobs: Sequence[_Job], workers: int, model_path: Path, threads: int, bars: _ProgressBars,
                    names: Mapping[int, str]) -> dict[int, VideoResult]:
    """Jobs in a pool of spawned processes. When a worker dies, the pool breaks and every unfinished job with
    it: those that had started are retried one at a time, each in a fresh pool of its own (a video that kills
    its worker again then fails alone), and those still queued go into the next shared pool."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    level = logging.getLogger().getEffectiveLevel()
    worker_level = max(level, logging.WARNING) if bars.enabled else level
    results: dict[int, VideoResult] = {}
    # Largest files first: a long video started last would run alone at the end while the other workers idle.
    todo = sorted(jobs, key=_size_bytes, reverse=True)
    isolate: list[_Job] = []
    while todo or isolate:
        isolated = not todo
        round_jobs = [isolate.pop(0)] if isolated else todo
        todo = []
        started: set[int] = set()
        finished_before = len(results)
        broken: list[_Job] = []
        with ProcessPoolExecutor(max_workers=min(workers, len(round_jobs)), mp_context=ctx, initializer=_init_worker,
                                 initargs=(str(model_path), threads, worker_level, queue)) as pool:
            futures = {pool.submit(_worker_run, job): job for job in round_jobs}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=POLL_INTERVAL_S, return_when=FIRST_COMPLETED)
                _drain(queue, bars, names, started)
                for future in done:
                    job = futures[future]
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        broken.append(job)
                        continue
                    except Exception as exc:  # noqa: BLE001 - e.g. a result that could not be sent back
                        result = _failed(job, job.output_dir, describe_error(exc))
                    _settle(results, job, result, bars)
        _drain(queue, bars, names, started)
        if isolated:
            # Alone in its pool, a job whose worker died is the cause.
            for job in broken:
                _settle(results, job, _failed(job, job.output_dir, "the worker process died while processing it "
                                              "(out of memory, a crash in the video decoder, or the worker "
                                              "could not start)"), bars)
            continue
        suspects = [job for job in broken if job.index in started]
        if not suspects and len(results) == finished_before:
            suspects = broken  # no word from any worker: try each job alone
        for job in broken:
            if job in suspects:
                logger.warning("a worker process died while on %s; retrying it on its own", job.source)
                isolate.append(job)
            else:
                todo.append(job)  # was only queued: not a suspect
    return results


def _size_bytes(job: _Job) -> int:
    try:
        return Path(job.source).stat().st_size
    except OSError:
        return 0


def _settle(results: dict[int, VideoResult], job: _Job, result: VideoResult, bars: _ProgressBars) -> None:
    results[job.index] = result
    bars.finish(job.index, result)
    _log_result(result)


def _drain(queue, bars: _ProgressBars, names: Mapping[int, str], started: set[int]) -> None:
    while True:
        try:
            index, done, total = queue.get_nowait()
        except Empty:
            return
        except (EOFError, OSError):
            return
        started.add(index)
        if index in names:
            bars.update(index, names[index], done, total)


# ----------------------------------------------------------------------------------------------
# what every engine shares: rehab/batch_ray.py schedules the same jobs through the same per-video function
# (one code path, two schedulers), so these are its public names.

Job = _Job
run_job = _run_job
plan_jobs = _plan
prepare_output_folder = _prepare_output_folder
OutputLock = _OutputLock
ProgressBars = _ProgressBars
log_result = _log_result
failed_result = _failed
job_size_bytes = _size_bytes

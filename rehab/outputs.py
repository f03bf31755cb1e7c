"""What a processed session leaves on disk, in one place: file names, frame rows, table and JSON writers, hashes.

Batch processing (``rehab process``, the video page) and live recordings write the same schema through this
module: one frames table (columns from :func:`frame_columns`, rows from :func:`frame_row`, streamed by
:class:`FrameTableWriter`), JSON written by :func:`write_json` only (NaN as null, renamed into place so that no
reader sees half a file), and :func:`sha256_file` for every checksum (outputs, sources, models). Those two are
defined once in rehab.core.files (train and export use them from there) and offered here beside the rest.
Torch-free.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rehab.analysis.reps import ExerciseRep
from rehab.analysis.summary import rep_rows
# The one copy of each (rehab.core.files), offered here for batch and live recordings.
from rehab.core.files import fsync_path, json_ready, part_path, sha256_file, write_json  # noqa: F401
from rehab.store import StoredRepetition

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

VIDEO_FILE = "annotated.mp4"
FRAMES_CSV = "frames.csv"
FRAMES_PARQUET = "frames.parquet"
SUMMARY_JSON = "summary.json"
REPORT_HTML = "report.html"
REPORT_PDF = "report.pdf"
DONE_FILE = "DONE.json"
DONE_SCHEMA = "rehab.batch.done/1"
# A live recording's repetitions (batch keeps them in summary.json and the report).
REPETITIONS_CSV = "repetitions.csv"
# Everything batch may write into a video's folder; a folder holding anything else is not ours to replace.
OUTPUT_FILES = (VIDEO_FILE, FRAMES_CSV, FRAMES_PARQUET, SUMMARY_JSON, REPORT_HTML, REPORT_PDF, DONE_FILE)
# Where a video's outputs are built before the whole folder is renamed into place (inside the output folder).
STAGING_DIR = ".partial"
CSV_FLOAT_FORMAT = "%.4f"
# Frame rows go to frames.csv / frames.parquet this many at a time: the table's memory is one chunk, however
# long the video (a row is a dict of ~80 values, ~7 KB with 16 joints: an hour at 30 fps held whole was ~0.8 GB).
FRAME_CHUNK_ROWS = 512
# Longest file name kept as data (most file systems' limit), and the longest suffix kept when shortening it.
MAX_FILE_NAME_CHARS = 255
MAX_SUFFIX_CHARS = 16
UNSAFE_NAME_CHARS = re.compile(r'[<>:"/\\|?*\x00-\x1f]')


# ----------------------------------------------------------------------------------------------
# small tables and file names


def write_table(rows: Sequence[Mapping[str, Any]] | pd.DataFrame, path: Path) -> Path:
    """Rows as CSV or Parquet (by the suffix), written to a temporary name first: no reader sees half a table."""
    import pandas as pd

    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    tmp = part_path(path)
    if path.suffix == ".parquet":
        frame.to_parquet(tmp, index=False)
    else:
        frame.to_csv(tmp, index=False)
    tmp.replace(path)
    return path


def clean_file_name(name: str) -> str:
    """A file name as given by a user or a browser, safe to show and store as data: its last path component,
    control and path characters replaced, at most MAX_FILE_NAME_CHARS long."""
    last = re.split(r"[/\\]", str(name))[-1]
    # Tabs and line breaks become spaces; other control characters and path characters "_".
    cleaned = UNSAFE_NAME_CHARS.sub("_", " ".join(last.split()))
    if len(cleaned) > MAX_FILE_NAME_CHARS:
        stem, suffix = os.path.splitext(cleaned)
        suffix = suffix if len(suffix) <= MAX_SUFFIX_CHARS else ""
        cleaned = stem[:MAX_FILE_NAME_CHARS - len(suffix)] + suffix
    return cleaned or "video"


# ----------------------------------------------------------------------------------------------
# the completion record (DONE.json): written last, it says the folder is complete


def write_completion_record(folder: Path, names: Sequence[str], fingerprint: Mapping[str, Any],
                            version: str) -> Path:
    """DONE.json in ``folder``: ``fingerprint`` (what the outputs were made from) and the size and SHA-256 of
    each named file, every file and the folder flushed to disk first and after."""
    files = {}
    for name in names:
        fsync_path(folder / name)
        files[name] = {"size_bytes": (folder / name).stat().st_size, "sha256": sha256_file(folder / name)}
    done = {"schema": DONE_SCHEMA, "fingerprint": fingerprint, "files": files,
            "completed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "rehab_version": version}
    path = write_json(done, folder / DONE_FILE)
    fsync_path(path)
    fsync_path(folder)
    return path


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
    if fingerprint is not None and recorded != json_ready(fingerprint):
        changed = sorted(k for k in set(recorded) | set(fingerprint) if recorded.get(k) != json_ready(fingerprint.get(k)))
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


# ----------------------------------------------------------------------------------------------
# repetitions


def write_repetitions(reps: Sequence[ExerciseRep], path: Path, t_offset_s: float = 0.0) -> Path:
    """One row per repetition; its times counted from ``t_offset_s`` (the start of the recording)."""
    rows = rep_rows(reps)
    for row in rows:
        for key in ("start_s", "peak_s", "end_s"):
            row[key] -= t_offset_s
    return write_table(rows, path)


def store_repetitions(reps: Iterable[ExerciseRep], t_offset_s: float = 0.0) -> tuple[StoredRepetition, ...]:
    """The pipeline's repetitions in the history database's form, times relative to ``t_offset_s``."""
    return tuple(
        StoredRepetition(number=r.number, side=r.side, rom_min_deg=r.rom.min_deg, rom_max_deg=r.rom.max_deg,
                         start_s=r.repetition.start_s - t_offset_s, end_s=r.repetition.end_s - t_offset_s)
        for r in reps)


# ----------------------------------------------------------------------------------------------
# the frames table


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
            self._csv = open(part_path(self.csv_path), "w", encoding="utf-8", newline="")  # noqa: SIM115
        chunk.to_csv(self._csv, index=False, header=first, float_format=self._float_format)
        # Later chunks take the first chunk's column types (a column all NaN so far is still float).
        table = pa.Table.from_pandas(chunk, preserve_index=False, schema=None if first else self._schema)
        if first:
            self._schema = table.schema
            self._parquet = pq.ParquetWriter(part_path(self.parquet_path), table.schema)
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
        part_path(self.csv_path).replace(self.csv_path)
        part_path(self.parquet_path).replace(self.parquet_path)
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
                part_path(path).unlink()
        self.closed = True

    def read_columns(self, columns: Sequence[str]) -> pd.DataFrame:
        """These columns of the finished table, read back from its Parquet file."""
        import pandas as pd

        if not self.closed:
            raise ValueError(f"{self.parquet_path} is still being written")
        return pd.read_parquet(self.parquet_path, columns=list(columns))

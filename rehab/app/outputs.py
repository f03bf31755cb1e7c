"""Writing what a live recording leaves behind next to its annotated video: frames table, repetitions, summary.

The frames table has the same columns as batch processing's (rows made by rehab.batch.frame_row), so a
recording and an analysed upload can be read by the same tools. Every number comes from the pipeline.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from rehab.analysis.reps import ExerciseRep
from rehab.analysis.summary import rep_rows
from rehab.store import Repetition

FRAMES_CSV = "frames.csv"
FRAMES_PARQUET = "frames.parquet"
REPETITIONS_CSV = "repetitions.csv"
SUMMARY_JSON = "summary.json"
VIDEO_MP4 = "annotated.mp4"


def write_table(rows: Sequence[Mapping[str, Any]] | pd.DataFrame, path: Path) -> Path:
    """Rows as CSV or Parquet (by the suffix), written to a temporary name first: no reader sees half a table."""
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    tmp = path.with_name(path.name + ".part")
    if path.suffix == ".parquet":
        frame.to_parquet(tmp, index=False)
    else:
        frame.to_csv(tmp, index=False)
    tmp.replace(path)
    return path


def write_json(data: Mapping[str, Any], path: Path) -> Path:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(_finite(data), indent=2, default=str), encoding="utf-8")
    tmp.replace(path)
    return path


def _finite(value: Any) -> Any:
    """JSON has no NaN: unmeasured values become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_repetitions(reps: Sequence[ExerciseRep], path: Path, t_offset_s: float = 0.0) -> Path:
    """One row per repetition; its times counted from ``t_offset_s`` (the start of the recording)."""
    rows = rep_rows(reps)
    for row in rows:
        for key in ("start_s", "peak_s", "end_s"):
            row[key] -= t_offset_s
    return write_table(rows, path)


def store_repetitions(reps: Iterable[ExerciseRep], t_offset_s: float = 0.0) -> tuple[Repetition, ...]:
    """The pipeline's repetitions in the history database's form, times relative to ``t_offset_s``."""
    return tuple(
        Repetition(number=r.number, side=r.side, rom_min_deg=r.rom.min_deg, rom_max_deg=r.rom.max_deg,
                   start_s=r.repetition.start_s - t_offset_s, end_s=r.repetition.end_s - t_offset_s)
        for r in reps)

"""A session summed up: repetitions (counts, range of motion, tempo, symmetry per side), and a processed
video's summary (:class:`VideoSummary`, what summary.json holds) with its per-angle statistics."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from statistics import fmean
from typing import Any, Sequence

import numpy as np

from rehab.analysis.exercises import Exercise
from rehab.analysis.reps import ExerciseRep

SECONDS_PER_MINUTE = 60.0
# summary.json's format (the name keeps the batch prefix it was published with).
SUMMARY_SCHEMA = "rehab.batch.summary/1"
ANGLE_PERCENTILES = (5, 50, 95)


@dataclass(frozen=True)
class SideSummary:
    side: str  # "both", "left" or "right"
    count: int
    mean_span_deg: float
    best_span_deg: float
    mean_min_deg: float
    mean_max_deg: float
    mean_duration_s: float
    # Repetitions per minute between the first repetition's start and the last one's end.
    cadence_per_min: float


@dataclass(frozen=True)
class SessionSummary:
    exercise: str
    count: int
    sides: tuple[SideSummary, ...]
    # Mean over repetitions where both sides moved (bilateral exercises), else from the per-side means of a
    # unilateral exercise done with both sides; NaN when only one side was seen moving.
    symmetry_difference_deg: float
    symmetry_ratio: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rep_rows(reps: Sequence[ExerciseRep]) -> list[dict[str, Any]]:
    """One flat row per repetition (for a table, CSV or parquet)."""
    rows = []
    for r in reps:
        rep = r.repetition
        row: dict[str, Any] = {
            "exercise": r.exercise, "number": r.number, "side": r.side,
            "start_s": rep.start_s, "peak_s": rep.peak_s, "end_s": rep.end_s,
            "duration_s": rep.duration_s, "time_to_peak_s": rep.time_to_peak_s,
            "time_from_peak_s": rep.time_from_peak_s,
            "min_deg": rep.rom.min_deg, "max_deg": rep.rom.max_deg, "span_deg": rep.rom.span_deg,
        }
        for side, rom in r.side_rom.items():
            row[f"{side}_span_deg"] = rom.span_deg
        row["symmetry_difference_deg"] = r.symmetry.difference_deg if r.symmetry else math.nan
        row["symmetry_ratio"] = r.symmetry.ratio if r.symmetry else math.nan
        rows.append(row)
    return rows


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return fmean(finite) if finite else math.nan


def summarize(exercise: str, reps: Sequence[ExerciseRep]) -> SessionSummary:
    sides: list[SideSummary] = []
    for side in dict.fromkeys(r.side for r in reps):
        mine = [r for r in reps if r.side == side]
        spans = [r.rom.span_deg for r in mine]
        elapsed = mine[-1].repetition.end_s - mine[0].repetition.start_s
        sides.append(SideSummary(
            side=side, count=len(mine),
            mean_span_deg=_mean(spans), best_span_deg=max(spans),
            mean_min_deg=_mean([r.rom.min_deg for r in mine]),
            mean_max_deg=_mean([r.rom.max_deg for r in mine]),
            mean_duration_s=_mean([r.repetition.duration_s for r in mine]),
            cadence_per_min=len(mine) * SECONDS_PER_MINUTE / elapsed if elapsed > 0 else math.nan,
        ))
    paired = [r.symmetry for r in reps if r.symmetry is not None]
    if paired:
        diff = _mean([s.difference_deg for s in paired])
        ratio = _mean([s.ratio for s in paired])
    else:
        by_side = {s.side: s.mean_span_deg for s in sides}
        if "left" in by_side and "right" in by_side:
            left, right = by_side["left"], by_side["right"]
            diff = left - right
            ratio = min(left, right) / max(left, right) if max(left, right) > 0 else math.nan
        else:
            diff = ratio = math.nan
    return SessionSummary(exercise=exercise, count=len(reps), sides=tuple(sides),
                          symmetry_difference_deg=diff, symmetry_ratio=ratio)


# ----------------------------------------------------------------------------------------------
# a processed video


@dataclass(frozen=True)
class AngleStatistics:
    """One angle over the frames where it was measured (NaN: never measured)."""

    frames_measured: int
    measured_fraction: float
    mean_deg: float
    std_deg: float
    min_deg: float
    p5_deg: float
    median_deg: float
    p95_deg: float
    max_deg: float
    range_deg: float
    p5_p95_range_deg: float


def angle_statistics(values_deg: np.ndarray) -> AngleStatistics:
    """Statistics of one angle's values per frame (NaN = not measured in that frame)."""
    v = np.asarray(values_deg, dtype=np.float64)
    ok = v[np.isfinite(v)]
    fraction = float(ok.size / v.size) if v.size else math.nan
    if not ok.size:
        nan = math.nan
        return AngleStatistics(0, fraction, nan, nan, nan, nan, nan, nan, nan, nan, nan)
    p5, median, p95 = np.percentile(ok, ANGLE_PERCENTILES)
    return AngleStatistics(
        frames_measured=int(ok.size), measured_fraction=fraction, mean_deg=float(ok.mean()), std_deg=float(ok.std()),
        min_deg=float(ok.min()), p5_deg=float(p5), median_deg=float(median), p95_deg=float(p95),
        max_deg=float(ok.max()), range_deg=float(ok.max() - ok.min()), p5_p95_range_deg=float(p95 - p5))


@dataclass(frozen=True)
class JointStatistics:
    reliable_fraction: float
    mean_score: float


@dataclass(frozen=True)
class SourceVideo:
    file: str
    file_name: str  # as the user knows it (an upload's own name), data only
    size_bytes: int
    width: int
    height: int
    fps: float
    codec: str
    rotation_deg: int
    frame_count: int  # as the container says (0: unknown)
    duration_s: float
    decoded_frames: int
    sha256: str


@dataclass(frozen=True)
class Truncation:
    """A file cut short, of which the readable part was processed."""

    decoded_frames: int
    header_frames: int
    message: str


@dataclass(frozen=True)
class Processing:
    frames: int
    frames_with_pose: int
    pose_fraction: float
    first_time_s: float
    duration_s: float
    output_fps: float
    frame_width: int
    frame_height: int
    stride: int
    max_seconds: float | None
    max_side_px: int | None
    elapsed_s: float
    frames_per_s: float
    mean_stage_ms: Mapping[str, float]


@dataclass(frozen=True)
class VideoSummary:
    """What one processed video's summary.json holds; :meth:`to_dict` is its one serialisation."""

    name: str
    source: SourceVideo
    truncated: Truncation | None
    processing: Processing
    exercise: Exercise | None
    repetitions: tuple[ExerciseRep, ...]
    session: SessionSummary | None
    angles: Mapping[str, AngleStatistics]
    joints: Mapping[str, JointStatistics]
    # Already JSON-ready records of the settings, the model and the options that made the outputs.
    settings: Mapping[str, Any]
    model: Mapping[str, Any]
    options: Mapping[str, Any]
    created_at: str
    rehab_version: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready but for NaN (rehab.outputs.write_json writes those as null), in summary.json's key order."""
        return {
            "schema": SUMMARY_SCHEMA,
            "source": asdict(self.source),
            "truncated": asdict(self.truncated) if self.truncated is not None else None,
            "processing": {**asdict(self.processing), "mean_stage_ms": dict(self.processing.mean_stage_ms)},
            "exercise": asdict(self.exercise) if self.exercise is not None else None,
            "repetitions": rep_rows(self.repetitions),
            "session": self.session.to_dict() if self.session is not None else None,
            "angles": {name: asdict(stats) for name, stats in self.angles.items()},
            "joints": {name: asdict(stats) for name, stats in self.joints.items()},
            "settings": dict(self.settings),
            "created_at": self.created_at,
            "rehab_version": self.rehab_version,
            "name": self.name,
            "model": dict(self.model),
            "options": dict(self.options),
        }

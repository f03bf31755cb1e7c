"""A session's repetitions summed up: counts, range of motion, tempo and symmetry per side."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import fmean
from typing import Any, Sequence

from rehab.analysis.reps import ExerciseRep

SECONDS_PER_MINUTE = 60.0


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

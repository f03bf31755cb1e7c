"""Repetition counting on joint-angle signals: hysteresis, minimum duration, range of motion, symmetry.

``RepCounter`` sees one angle signal in degrees with timestamps in seconds and knows nothing of pixels or
poses. A NaN sample (an unreliable angle) is skipped: it changes no state and enters no range of motion.

The counter's phases, for an exercise whose active phase is at high angles (``enter_deg > exit_deg``;
mirrored otherwise):

- ``waiting``: not yet seen the rest zone (angle <= exit_deg). A session that starts mid-movement (e.g.
  standing in a sit-to-stand) must first reach rest, or its first half-movement would count.
- ``rest``: angle <= exit_deg, or between the thresholds (a partial movement so far).
- ``active``: the angle went past enter_deg; it stays active until it comes back to <= exit_deg.

A repetition is counted when an active phase ends, if the time from leaving the rest zone to returning to it
is at least ``min_duration_s`` and the angle was measured all along: a gap longer than ``max_gap_s`` between
two measured samples inside a cycle (the joints unreliable, the person gone) abandons the cycle, and the
counter waits for the rest zone again. A repetition is counted from what was seen, never from what was not. Its range of motion has two ends measured over different windows: the rest
end (the min, for a high-angle exercise) over all samples since the previous repetition ended, so it includes
the starting position; the far end (the max) over the repetition's own cycle, from leaving the rest zone to
returning, so that a glitch rejected as too short earlier at rest cannot inflate it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Mapping

from rehab.analysis.exercises import Exercise

class Phase(str, Enum):
    """Where a counter is in a repetition (a str, so it compares and serialises as its name)."""

    WAITING = "waiting"
    REST = "rest"
    ACTIVE = "active"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class RangeOfMotion:
    min_deg: float
    max_deg: float

    @property
    def span_deg(self) -> float:
        return self.max_deg - self.min_deg

    @property
    def known(self) -> bool:
        return math.isfinite(self.min_deg) and math.isfinite(self.max_deg)

    @staticmethod
    def empty() -> "RangeOfMotion":
        return RangeOfMotion(math.nan, math.nan)


@dataclass(frozen=True)
class Repetition:
    """One counted repetition of one signal. Times in seconds on the caller's clock."""

    index: int  # 1-based within its counter
    start_s: float  # left the rest zone
    peak_s: float  # furthest into the active phase
    end_s: float  # back in the rest zone
    rom: RangeOfMotion

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def time_to_peak_s(self) -> float:
        return self.peak_s - self.start_s

    @property
    def time_from_peak_s(self) -> float:
        return self.end_s - self.peak_s


@dataclass(frozen=True)
class CounterState:
    count: int
    phase: Phase
    current_rom: RangeOfMotion  # since the end of the last repetition
    last_rep: Repetition | None


class _Range:
    """Running min/max of the finite samples seen since the last reset."""

    def __init__(self) -> None:
        self.reset()

    def reset(self, value: float = math.nan) -> None:
        self.lo = value
        self.hi = value

    def add(self, value: float) -> None:
        if not math.isfinite(value):
            return
        self.lo = value if not math.isfinite(self.lo) else min(self.lo, value)
        self.hi = value if not math.isfinite(self.hi) else max(self.hi, value)

    def rom(self) -> RangeOfMotion:
        return RangeOfMotion(self.lo, self.hi)


class _WindowedRange:
    """The two windows of a range of motion: since the last repetition, and the current cycle."""

    def __init__(self, active_high: bool) -> None:
        self.active_high = active_high
        self.window = _Range()
        self.cycle = _Range()

    def reset(self, value: float = math.nan) -> None:
        self.window.reset(value)
        self.cycle.reset()

    def add(self, value: float, in_cycle: bool) -> None:
        self.window.add(value)
        if in_cycle:
            self.cycle.add(value)
        else:
            self.cycle.reset()

    def rep_rom(self) -> RangeOfMotion:
        if self.active_high:
            return RangeOfMotion(self.window.lo, self.cycle.hi)
        return RangeOfMotion(self.cycle.lo, self.window.hi)

    def current_rom(self) -> RangeOfMotion:
        return self.window.rom()


class RepCounter:
    """Counts repetitions of one angle signal with two thresholds and a minimum duration."""

    def __init__(self, enter_deg: float, exit_deg: float, min_duration_s: float = 0.5,
                 max_gap_s: float = math.inf) -> None:
        if not (math.isfinite(enter_deg) and math.isfinite(exit_deg)) or enter_deg == exit_deg:
            raise ValueError(f"enter_deg and exit_deg must be finite and differ, got {enter_deg}, {exit_deg}")
        if not min_duration_s >= 0:
            raise ValueError(f"min_duration_s must be >= 0, got {min_duration_s}")
        self.enter_deg = float(enter_deg)
        self.exit_deg = float(exit_deg)
        if not max_gap_s > 0:
            raise ValueError(f"max_gap_s must be > 0, got {max_gap_s}")
        self.min_duration_s = float(min_duration_s)
        self.max_gap_s = float(max_gap_s)
        # +1 when the active phase is at high angles; comparisons below are written for that case.
        self._sign = 1.0 if enter_deg > exit_deg else -1.0
        self.reset()

    @classmethod
    def for_exercise(cls, exercise: Exercise) -> "RepCounter":
        return cls(exercise.enter_deg, exit_deg=exercise.exit_deg, min_duration_s=exercise.min_duration_s,
                   max_gap_s=exercise.max_gap_s)

    def reset(self) -> None:
        self.count = 0
        self.phase = Phase.WAITING
        self.last_rep: Repetition | None = None
        self.rejected = 0  # active phases too short to count
        self.abandoned = 0  # cycles with the angle unmeasured for longer than max_gap_s
        self._range = _WindowedRange(active_high=self._sign > 0)
        self._last_t = -math.inf
        self._left_rest_s = math.nan
        self._peak_s = math.nan
        self._peak_value = math.nan

    @property
    def in_cycle(self) -> bool:
        """True between leaving the rest zone and returning to it."""
        return not math.isnan(self._left_rest_s)

    def _in_rest(self, value: float) -> bool:
        return self._sign * (value - self.exit_deg) <= 0.0

    def _past_enter(self, value: float) -> bool:
        return self._sign * (value - self.enter_deg) >= 0.0

    def update(self, angle_deg: float, t_s: float) -> Repetition | None:
        """Feed one sample; returns the repetition this sample completed, if any."""
        t_s = float(t_s)
        if not math.isfinite(t_s):
            raise ValueError(f"t_s must be finite, got {t_s}")
        if t_s < self._last_t:
            raise ValueError(f"timestamps must not go backwards: got t_s={t_s} after {self._last_t} "
                             "(call reset() when a new recording starts)")
        value = float(angle_deg)
        if not math.isfinite(value):
            return None
        if self.in_cycle and t_s - self._last_t > self.max_gap_s:
            self.abandoned += 1
            self.phase = Phase.WAITING
            self._left_rest_s = math.nan
        self._last_t = t_s
        in_rest = self._in_rest(value)

        if self.phase == Phase.WAITING:
            if in_rest:
                self.phase = Phase.REST
                self._range.reset(value)
                self._left_rest_s = math.nan
            return None

        if self.phase == Phase.REST:
            if in_rest:
                self._left_rest_s = math.nan
            elif math.isnan(self._left_rest_s):
                self._left_rest_s = t_s
            self._range.add(value, in_cycle=self.in_cycle)
            if self._past_enter(value):
                self.phase = Phase.ACTIVE
                self._peak_s, self._peak_value = t_s, value
            return None

        # active
        self._range.add(value, in_cycle=True)
        if self._sign * (value - self._peak_value) > 0.0:
            self._peak_s, self._peak_value = t_s, value
        if not in_rest:
            return None
        self.phase = Phase.REST
        duration = t_s - self._left_rest_s
        if duration < self.min_duration_s:
            self.rejected += 1
            self._left_rest_s = math.nan
            return None
        self.count += 1
        rep = Repetition(index=self.count, start_s=self._left_rest_s, peak_s=self._peak_s, end_s=t_s,
                         rom=self._range.rep_rom())
        self.last_rep = rep
        self._range.reset(value)
        self._left_rest_s = math.nan
        return rep

    @property
    def state(self) -> CounterState:
        return CounterState(count=self.count, phase=self.phase, current_rom=self._range.current_rom(), last_rep=self.last_rep)


@dataclass(frozen=True)
class Symmetry:
    """Left/right comparison of one repetition's range of motion (both sides must have moved)."""

    left_span_deg: float
    right_span_deg: float

    @property
    def difference_deg(self) -> float:
        """Left minus right span: positive when the left side moved further."""
        return self.left_span_deg - self.right_span_deg

    @property
    def ratio(self) -> float:
        """Smaller span over larger span: 1.0 is perfectly symmetric."""
        hi = max(self.left_span_deg, self.right_span_deg)
        return min(self.left_span_deg, self.right_span_deg) / hi if hi > 0 else math.nan


@dataclass(frozen=True)
class ExerciseRep:
    """A repetition of an exercise: ``side`` is "both" for bilateral exercises, else the side that moved."""

    exercise: str
    side: str
    number: int  # 1-based over the whole session (all sides)
    repetition: Repetition
    side_rom: Mapping[str, RangeOfMotion]
    symmetry: Symmetry | None

    @property
    def rom(self) -> RangeOfMotion:
        return self.repetition.rom


@dataclass(frozen=True)
class RepState:
    """What the counter knows after a frame: counts, the range of motion so far, the last repetition."""

    exercise: str
    count: int
    counts_by_side: Mapping[str, int]
    phase_by_side: Mapping[str, Phase]
    # Per side ("left"/"right"), min/max since that side's last repetition ended.
    current_rom: Mapping[str, RangeOfMotion]
    last_rep: ExerciseRep | None
    new_rep: ExerciseRep | None = None  # completed by this very frame


@dataclass
class ExerciseTracker:
    """Counts one exercise from per-frame joint angles (a dict name -> degrees, NaN when unreliable)."""

    exercise: Exercise
    reps: list[ExerciseRep] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        ex = self.exercise
        # Bilateral: one counter on the mean of both sides; unilateral: one counter per side.
        channels = ("both",) if ex.bilateral else ex.sides
        self._counters = {ch: RepCounter.for_exercise(ex) for ch in channels}
        self._ranges = {side: _WindowedRange(ex.active_high) for side in ex.sides}
        self._last_rep: ExerciseRep | None = None
        self.incoherent_frames = 0  # bilateral frames dropped: the sides apart by more than max_side_difference_deg

    def reset(self) -> None:
        for counter in self._counters.values():
            counter.reset()
        for rng in self._ranges.values():
            rng.reset()
        self.reps.clear()
        self._last_rep = None
        self.incoherent_frames = 0

    def update(self, angles_deg: Mapping[str, float], t_s: float) -> RepState:
        ex = self.exercise
        values = {side: float(angles_deg.get(angle, math.nan)) for side, angle in zip(ex.sides, ex.angles)}
        new_rep: ExerciseRep | None = None
        if ex.bilateral:
            finite = [v for v in values.values() if math.isfinite(v)]
            # One unreliable side falls back to the other rather than losing the frame (the far knee of a squat
            # filmed from the side); two measured sides far apart are not the bilateral movement at all.
            if len(finite) == 2 and abs(finite[0] - finite[1]) > ex.max_side_difference_deg:
                finite = []
                self.incoherent_frames += 1
            combined = sum(finite) / len(finite) if finite else math.nan
            rep = self._step(self._counters["both"], combined, t_s, values)
            if rep is not None:
                new_rep = self._finish(rep, "both", values)
        else:
            for side, value in values.items():
                rep = self._step(self._counters[side], value, t_s, {side: value})
                if rep is not None:
                    new_rep = self._finish(rep, side, {side: value})
        return self.state(new_rep)

    def _step(self, counter: RepCounter, value: float, t_s: float, side_values: Mapping[str, float]) -> Repetition | None:
        """Advance one counter and keep the per-side ranges in step with its windows."""
        was_waiting = counter.phase == Phase.WAITING
        abandoned = counter.abandoned
        rep = counter.update(value, t_s)
        restarted = was_waiting or counter.abandoned != abandoned
        for side, side_value in side_values.items():
            if restarted and counter.phase != Phase.WAITING:
                self._ranges[side].reset(side_value)
            elif counter.phase != Phase.WAITING:
                self._ranges[side].add(side_value, in_cycle=counter.in_cycle or rep is not None)
        return rep

    def _finish(self, rep: Repetition, side: str, side_values: Mapping[str, float]) -> ExerciseRep:
        side_rom = {s: self._ranges[s].rep_rom() for s in side_values}
        for s, value in side_values.items():
            self._ranges[s].reset(value)
        symmetry = None
        if len(side_rom) == 2:
            left, right = side_rom["left"], side_rom["right"]
            # Symmetry only means something where both sides actually moved through the hysteresis band.
            band = abs(self.exercise.enter_deg - self.exercise.exit_deg)
            if left.known and right.known and min(left.span_deg, right.span_deg) >= band:
                symmetry = Symmetry(left_span_deg=left.span_deg, right_span_deg=right.span_deg)
        out = ExerciseRep(exercise=self.exercise.name, side=side, number=len(self.reps) + 1, repetition=rep,
                          side_rom=side_rom, symmetry=symmetry)
        self.reps.append(out)
        self._last_rep = out
        return out

    def state(self, new_rep: ExerciseRep | None = None) -> RepState:
        return RepState(
            exercise=self.exercise.name,
            count=sum(c.count for c in self._counters.values()),
            counts_by_side={ch: c.count for ch, c in self._counters.items()},
            phase_by_side={ch: c.phase for ch, c in self._counters.items()},
            current_rom={side: rng.current_rom() for side, rng in self._ranges.items()},
            last_rep=self._last_rep,
            new_rep=new_rep,
        )

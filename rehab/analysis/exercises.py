"""Exercises as data: which joint angle(s) a repetition is read from and its two thresholds.

A repetition is a trip from rest into the "active" phase and back. The active phase is entered when the
primary angle goes past ``enter_deg`` and left when it comes back past ``exit_deg``; the gap between the two
is the hysteresis that keeps a noisy angle near one threshold from counting twice. ``enter_deg > exit_deg``
means the active phase is the high-angle end (a squat bends the knee), ``enter_deg < exit_deg`` the
low-angle end (a seated knee extension straightens it).

Angles are those of ``rehab.core.angles`` (flexion: 0 deg = straight limb; shoulder abduction: 0 deg = arm
down, 90 deg = horizontal). Thresholds are deliberately modest so that patients with a limited range still
count; a therapist adapts them per patient with ``dataclasses.replace`` or ``Exercise.with_thresholds``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from rehab.core.angles import ANGLES_BY_NAME

SIDES = ("left", "right")


@dataclass(frozen=True)
class Exercise:
    name: str
    title: str
    # Primary angles, one per side (left first) or a single one.
    angles: tuple[str, ...]
    enter_deg: float
    exit_deg: float
    # A cycle shorter than this (from leaving rest to returning) is noise or a twitch, not a repetition.
    min_duration_s: float
    # True: both sides move together and one repetition is counted on their mean (e.g. squat);
    # False: each side is counted on its own (e.g. alternating elbow curls).
    bilateral: bool
    description: str = ""
    # A cycle with its angle unmeasured for longer than this (joints unreliable, person out of view) is not
    # counted: a repetition needs the exercise's joints seen through it. At 30 fps, 0.3 s is 9 frames.
    max_gap_s: float = 0.3
    # Starting point for the target range of the primary angle (degrees) shown live; the therapist sets the
    # patient's own.
    target_range_deg: tuple[int, int] = (0, 90)
    # Bilateral only: both sides move together, so a frame whose two sides, both measured, differ by more than
    # this is not the exercise (one leg stepping or tucked, or one side misplaced by the model) and counts as
    # unmeasured. Generous on purpose: a patient's sides can differ a lot; 45 deg is far past what one knee or
    # shoulder lags the other in a bilateral movement.
    max_side_difference_deg: float = 45.0

    def __post_init__(self) -> None:
        if not self.angles:
            raise ValueError(f"exercise {self.name!r} names no primary angle")
        for angle in self.angles:
            if angle not in ANGLES_BY_NAME:
                raise ValueError(f"exercise {self.name!r}: unknown angle {angle!r}; known: {', '.join(ANGLES_BY_NAME)}")
        if len(set(self.sides)) != len(self.angles):
            raise ValueError(f"exercise {self.name!r}: angles {self.angles} must be on distinct sides")
        if self.bilateral and len(self.angles) != 2:
            raise ValueError(f"bilateral exercise {self.name!r} needs a left and a right angle, got {self.angles}")
        if not self.enter_deg != self.exit_deg:
            raise ValueError(f"exercise {self.name!r}: enter_deg and exit_deg must differ (hysteresis), "
                             f"both are {self.enter_deg}")
        if not self.min_duration_s >= 0:
            raise ValueError(f"exercise {self.name!r}: min_duration_s must be >= 0, got {self.min_duration_s}")
        if not self.max_side_difference_deg > 0:
            raise ValueError(f"exercise {self.name!r}: max_side_difference_deg must be > 0, "
                             f"got {self.max_side_difference_deg}")
        lo, hi = self.target_range_deg
        if not 0 <= lo < hi <= 180:
            raise ValueError(f"exercise {self.name!r}: target_range_deg must be 0 <= low < high <= 180, got "
                             f"{self.target_range_deg}")
        if not self.max_gap_s > 0:
            raise ValueError(f"exercise {self.name!r}: max_gap_s must be > 0, got {self.max_gap_s}")

    @property
    def sides(self) -> tuple[str, ...]:
        """Side of each primary angle: "left", "right", or the angle's name when it has no side."""
        return tuple(side_of(a) for a in self.angles)

    @property
    def angle_base(self) -> str:
        """The primary angle's name without its side: "knee_flexion", "shoulder_abduction"."""
        first = self.angles[0]
        side = side_of(first)
        return first[len(side) + 1:] if side in SIDES else first

    @property
    def angle_label(self) -> str:
        """The primary angle in words, without its side: "knee flexion", "shoulder abduction"."""
        return self.angle_base.replace("_", " ")

    @property
    def active_high(self) -> bool:
        """True when the active phase is at high angles (enter above exit)."""
        return self.enter_deg > self.exit_deg

    def with_thresholds(self, enter_deg: float, exit_deg: float, min_duration_s: float | None = None) -> "Exercise":
        return replace(self, enter_deg=enter_deg, exit_deg=exit_deg,
                       min_duration_s=self.min_duration_s if min_duration_s is None else min_duration_s)


def side_of(angle_name: str) -> str:
    for side in SIDES:
        if angle_name.startswith(side + "_"):
            return side
    return angle_name


EXERCISES: dict[str, Exercise] = {e.name: e for e in (
    Exercise(
        name="squat", title="Squat",
        angles=("left_knee_flexion", "right_knee_flexion"), enter_deg=60.0, exit_deg=30.0,
        # A controlled squat takes a second or more from straight knees back to straight; the dip before a jump,
        # or a landing, is over in under one.
        min_duration_s=1.0, bilateral=True,
        description="Standing, bend both knees and return; counted when the knees straighten again.",
    ),
    Exercise(
        name="sit_to_stand", title="Sit to stand",
        angles=("left_knee_flexion", "right_knee_flexion"), enter_deg=30.0, exit_deg=60.0,
        min_duration_s=0.8, bilateral=True,
        description="From sitting (knees ~90 deg) stand up (knees straight) and sit down again; "
                    "counted when seated again.",
    ),
    Exercise(
        name="knee_extension", title="Seated knee extension",
        angles=("left_knee_flexion", "right_knee_flexion"), enter_deg=35.0, exit_deg=65.0,
        min_duration_s=0.6, bilateral=False,
        description="Seated, straighten one knee and lower it; each leg counted on its own.",
    ),
    Exercise(
        name="shoulder_abduction", title="Shoulder abduction",
        angles=("left_shoulder_abduction", "right_shoulder_abduction"), enter_deg=70.0, exit_deg=35.0,
        min_duration_s=0.6, bilateral=False,
        target_range_deg=(0, 120),
        description="Facing the camera, raise one arm sideways and lower it; each arm counted on its own.",
    ),
    Exercise(
        name="lateral_raise", title="Lateral raise",
        angles=("left_shoulder_abduction", "right_shoulder_abduction"), enter_deg=60.0, exit_deg=30.0,
        min_duration_s=0.6, bilateral=True,
        description="Facing the camera, raise both arms sideways to about shoulder height and lower them.",
    ),
    Exercise(
        name="elbow_curl", title="Elbow curl",
        angles=("left_elbow_flexion", "right_elbow_flexion"), enter_deg=90.0, exit_deg=45.0,
        min_duration_s=0.5, bilateral=False,
        target_range_deg=(0, 130),
        description="Bend the elbow to bring the hand to the shoulder and lower it; each arm counted on its own.",
    ),
)}


@dataclass(frozen=True)
class _Movement:
    """How a therapist says an angle moves: "the knee" is "bent"; a repetition "bends" and "straightens" it."""

    one: str
    both: str
    high_adjective: str
    high_verb: str
    low_verb: str


# Keyed by the angle's name without its side. High angles are the bent / raised end (rehab.core.angles).
_MOVEMENTS = {
    "knee_flexion": _Movement("the knee", "the knees", "bent", "bends", "straightens"),
    "hip_flexion": _Movement("the hip", "the hips", "bent", "bends", "straightens"),
    "elbow_flexion": _Movement("the elbow", "the elbows", "bent", "bends", "straightens"),
    "shoulder_abduction": _Movement("the arm", "the arms", "raised", "raises", "lowers"),
}


def describe_repetition(exercise: Exercise) -> str:
    """What the patient does for one repetition to count, in words, with the exercise's thresholds: e.g.
    "at rest the knees are bent less than 30 deg; a repetition bends them past 60 deg and straightens them
    back to less than 30 deg, in at least 0.6 s". Reversed exercises (the active phase at low angles, like
    sit to stand) read the right way round: at rest the knees are bent more than 60 deg."""
    base = exercise.angle_base
    move = _MOVEMENTS.get(base) or _Movement(f"the {base.replace('_', ' ')}", f"the {base.replace('_', ' ')}",
                                             "at", "takes", "brings back")
    plural = exercise.bilateral
    subject, pronoun, be = (move.both, "them", "are") if plural else (move.one, "it", "is")
    enter, exit_, took = f"{exercise.enter_deg:g} deg", f"{exercise.exit_deg:g} deg", f"{exercise.min_duration_s:g} s"
    if exercise.active_high:
        return (f"at rest {subject} {be} {move.high_adjective} less than {exit_}; a repetition {move.high_verb} "
                f"{pronoun} past {enter} and {move.low_verb} {pronoun} back to less than {exit_}, in at least {took}")
    return (f"at rest {subject} {be} {move.high_adjective} more than {exit_}; a repetition {move.low_verb} "
            f"{pronoun} to less than {enter} and {move.high_verb} {pronoun} back past {exit_}, in at least {took}")


def get_exercise(name: str) -> Exercise:
    try:
        return EXERCISES[name]
    except KeyError:
        raise KeyError(f"unknown exercise {name!r}; known: {', '.join(EXERCISES)}") from None

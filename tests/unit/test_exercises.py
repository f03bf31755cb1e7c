"""Exercises as data, checked against joint angles of hand-built poses in their rest and active positions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rehab.analysis.exercises import EXERCISES, Exercise, get_exercise
from rehab.analysis.reps import ExerciseTracker
from rehab.core.angles import joint_angles
from rehab.core.skeleton import LSP14, MPII16
from tests.stick_figure import pose

@pytest.mark.parametrize("joints", [LSP14, MPII16])
def test_angles_from_hand_built_poses(joints):
    angles = joint_angles(pose(knee_flexion=90, hip_flexion=45, shoulder_abduction=80, elbow_flexion=100,
                               trunk_lean=20, joints=joints), joints.joints)
    for side in ("left", "right"):
        assert angles[f"{side}_knee_flexion"] == pytest.approx(90, abs=1e-6)
        assert angles[f"{side}_hip_flexion"] == pytest.approx(45, abs=1e-6)
        assert angles[f"{side}_elbow_flexion"] == pytest.approx(100, abs=1e-6)
    assert angles["trunk_lean"] == pytest.approx(20, abs=1e-6)
    upright = joint_angles(pose(shoulder_abduction=80, joints=joints), joints.joints)
    for side in ("left", "right"):
        assert upright[f"{side}_shoulder_abduction"] == pytest.approx(80, abs=1e-6)
        assert upright[f"{side}_knee_flexion"] == pytest.approx(0, abs=1e-6)
        assert upright[f"{side}_ankle"] == pytest.approx(0, abs=1e-6)


def test_unreliable_joint_gives_nan():
    kp = pose(knee_flexion=60)
    scores = np.full(LSP14.num_joints, 0.9)
    scores[LSP14.index("left_ankle")] = 0.1
    angles = joint_angles(kp, LSP14.joints, scores, min_score=0.3)
    assert math.isnan(angles["left_knee_flexion"]) and math.isnan(angles["left_ankle"])
    assert angles["right_knee_flexion"] == pytest.approx(60)


# Rest and active positions of each exercise as joint angles of the hand-built pose.
POSITIONS = {
    "squat": ({"knee_flexion": 5, "hip_flexion": 5}, {"knee_flexion": 100, "hip_flexion": 90}),
    "sit_to_stand": ({"knee_flexion": 90, "hip_flexion": 90}, {"knee_flexion": 5, "hip_flexion": 5}),
    "knee_extension": ({"knee_flexion": 90, "hip_flexion": 90}, {"knee_flexion": 10, "hip_flexion": 90}),
    "shoulder_abduction": ({"shoulder_abduction": 10}, {"shoulder_abduction": 95}),
    "lateral_raise": ({"shoulder_abduction": 10}, {"shoulder_abduction": 90}),
    "elbow_curl": ({"elbow_flexion": 10}, {"elbow_flexion": 130}),
}


def test_every_exercise_is_data_with_a_position_pair():
    assert set(EXERCISES) == set(POSITIONS)
    for ex in EXERCISES.values():
        assert isinstance(ex, Exercise) and ex.angles and ex.min_duration_s > 0
        assert ex.sides == ("left", "right")
        with pytest.raises(AttributeError):
            ex.enter_deg = 0  # frozen


@pytest.mark.parametrize("name", sorted(POSITIONS))
def test_hand_built_repetitions_count(name):
    """Rest -> active -> rest poses, 0.1 s apart, make exactly one repetition per moving side."""
    ex = get_exercise(name)
    rest, active = (pose(**p) for p in POSITIONS[name])
    tracker = ExerciseTracker(ex)
    frames = [rest] * 5 + [rest + (active - rest) * f for f in np.linspace(0, 1, 6)] + [active] * 5 \
        + [active + (rest - active) * f for f in np.linspace(0, 1, 6)] + [rest] * 5
    for i, kp in enumerate(frames):
        state = tracker.update(joint_angles(kp, LSP14.joints), i * 0.1)
    assert state.count == (1 if ex.bilateral else 2), state
    rep = tracker.reps[0]
    rest_angle = joint_angles(rest, LSP14.joints)[ex.angles[0]]
    active_angle = joint_angles(active, LSP14.joints)[ex.angles[0]]
    assert rep.rom.span_deg == pytest.approx(abs(active_angle - rest_angle), abs=0.5)
    if ex.bilateral:
        assert rep.symmetry is not None and rep.symmetry.ratio == pytest.approx(1.0, abs=1e-6)


def test_exercise_validation():
    with pytest.raises(ValueError, match="unknown angle"):
        Exercise("x", "X", ("left_nose_wiggle",), 10, 5, 0.5, bilateral=False)
    with pytest.raises(ValueError, match="left and a right"):
        Exercise("x", "X", ("left_knee_flexion",), 60, 30, 0.5, bilateral=True)
    single = Exercise("trunk", "Trunk", ("trunk_lean",), 30, 10, 0.5, bilateral=False)
    assert single.sides == ("trunk_lean",)
    tracker = ExerciseTracker(single)
    for i, v in enumerate([0, 40, 40, 40, 40, 40, 40, 0]):
        state = tracker.update({"trunk_lean": v}, i * 0.1)
    assert state.count == 1


def test_exercises_name_their_angle_in_words_and_a_target_to_start_from():
    from rehab.analysis.exercises import EXERCISES, Exercise

    assert EXERCISES["squat"].angle_label == "knee flexion"
    assert EXERCISES["shoulder_abduction"].angle_label == "shoulder abduction"
    assert EXERCISES["elbow_curl"].target_range_deg == (0, 130)
    for exercise in EXERCISES.values():
        lo, hi = exercise.target_range_deg
        assert 0 <= lo < hi <= 180
    with pytest.raises(ValueError, match="target_range_deg"):
        Exercise(name="x", title="X", angles=("left_knee_flexion",), enter_deg=60, exit_deg=30, min_duration_s=0.5,
                 bilateral=False, target_range_deg=(90, 10))

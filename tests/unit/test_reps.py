"""Repetition counting on synthetic angle signals: noise, pauses, partial repetitions, NaN gaps."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from rehab.analysis.exercises import EXERCISES, get_exercise
from rehab.analysis.reps import ExerciseTracker, RepCounter
from rehab.analysis.summary import rep_rows, summarize

FPS = 30.0


def _segment(start_deg: float, peak_deg: float, duration_s: float) -> np.ndarray:
    """A smooth excursion start -> peak -> start (half a cosine period each way)."""
    n = max(int(round(duration_s * FPS)), 2)
    phase = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return start_deg + (peak_deg - start_deg) * (1.0 - np.cos(phase)) / 2.0


def _hold(value_deg: float, duration_s: float) -> np.ndarray:
    return np.full(int(round(duration_s * FPS)), value_deg)


def _run(counter: RepCounter, signal: np.ndarray) -> list:
    reps = []
    for i, value in enumerate(signal):
        rep = counter.update(value, i / FPS)
        if rep is not None:
            reps.append(rep)
    return reps


def squat_session(rng: np.random.Generator, noise_deg: float = 3.0) -> tuple[np.ndarray, int]:
    """Full squats (5 -> 100 deg), partial ones (to 45 deg, between the thresholds), pauses at the bottom
    and at rest, a one-sample glitch and NaN gaps; returns the signal and the true number of repetitions."""
    parts = [
        _hold(5, 1.0),
        _segment(5, 100, 2.0),  # 1
        _hold(5, 2.5),  # pause at rest
        _segment(5, 45, 1.5),  # partial: never reaches the enter threshold
        _segment(5, 100, 2.4),  # 2
        np.concatenate([_segment(5, 100, 2.0)[:30], _hold(100, 3.0), _segment(5, 100, 2.0)[30:]]),  # 3, paused at the bottom
        _hold(5, 1.0),
        _segment(5, 47, 1.2),  # partial
        _segment(5, 90, 1.6),  # 4
        _hold(5, 1.0),
    ]
    signal = np.concatenate(parts)
    signal = signal + rng.normal(0.0, noise_deg, signal.shape)
    glitch_at = int(1.0 * FPS) // 2
    signal[glitch_at] = 110.0  # a one-frame mis-detection at rest: must not count
    signal[200:204] = np.nan  # unreliable frames inside repetition 2
    return signal, 4


@pytest.mark.parametrize("seed", range(5))
def test_counts_noisy_squats_exactly(seed):
    signal, truth = squat_session(np.random.default_rng(seed))
    counter = RepCounter(enter_deg=60, exit_deg=30, min_duration_s=0.6)
    reps = _run(counter, signal)
    assert counter.count == truth == len(reps)
    for rep in reps:
        assert -10.0 <= rep.rom.min_deg <= 15.0
        assert 85.0 <= rep.rom.max_deg <= 109.0  # the 110 deg glitch at rest is not part of any repetition
        assert rep.rom.span_deg == pytest.approx(rep.rom.max_deg - rep.rom.min_deg)
        assert rep.start_s < rep.peak_s < rep.end_s
        assert 0.6 <= rep.duration_s <= 5.0


def test_noise_hovering_at_a_threshold_counts_once():
    rng = np.random.default_rng(7)
    signal = np.concatenate([_hold(5, 1), np.linspace(5, 60, 30), _hold(60, 5), np.linspace(60, 5, 30), _hold(5, 1)])
    signal = signal + rng.normal(0.0, 6.0, signal.shape)  # crosses enter_deg dozens of times
    assert ((signal[60:210] > 60) != (signal[61:211] > 60)).sum() > 20
    counter = RepCounter(enter_deg=60, exit_deg=30, min_duration_s=0.5)
    _run(counter, signal)
    assert counter.count == 1


def test_short_spike_is_rejected_by_min_duration():
    signal = np.concatenate([_hold(5, 1), [100, 100, 5], _hold(5, 1)])
    counter = RepCounter(enter_deg=60, exit_deg=30, min_duration_s=0.5)
    _run(counter, signal)
    assert counter.count == 0
    assert counter.rejected == 1


def test_nan_samples_change_nothing():
    counter = RepCounter(enter_deg=60, exit_deg=30, min_duration_s=0.0)
    for i, v in enumerate([5, 80, math.nan, math.nan, 5]):
        counter.update(v, float(i))
        if i == 3:
            assert counter.phase == "active"
            assert counter.state.current_rom.max_deg == 80
    assert counter.count == 1
    assert counter.last_rep.rom.min_deg == 5 and counter.last_rep.rom.max_deg == 80


def test_active_low_direction_knee_extension():
    ex = get_exercise("knee_extension")
    assert not ex.active_high
    signal = np.concatenate([_hold(90, 1), _segment(90, 5, 2.0), _hold(90, 1), _segment(90, 50, 2.0),
                             _segment(90, 10, 1.5), _hold(90, 1)])
    counter = RepCounter.for_exercise(ex)
    reps = _run(counter, signal)
    assert counter.count == 2
    assert reps[0].rom.min_deg == pytest.approx(5, abs=1) and reps[0].rom.max_deg == pytest.approx(90)


def test_starting_mid_movement_waits_for_rest():
    # Sit-to-stand starting while standing (the active zone): the first sit-down is not a repetition.
    ex = get_exercise("sit_to_stand")
    signal = np.concatenate([_hold(5, 1), np.linspace(5, 90, 30), _hold(90, 1), _segment(90, 5, 2.0), _hold(90, 1)])
    counter = RepCounter.for_exercise(ex)
    _run(counter, signal)
    assert counter.count == 1


def test_timestamps_must_not_go_backwards():
    counter = RepCounter(60, 30)
    counter.update(5, 1.0)
    with pytest.raises(ValueError, match="backwards"):
        counter.update(5, 0.5)


def test_bad_thresholds():
    with pytest.raises(ValueError, match="differ"):
        RepCounter(30, 30)
    with pytest.raises(ValueError, match="enter_deg"):
        get_exercise("squat").with_thresholds(40, 40)
    with pytest.raises(KeyError, match="known"):
        get_exercise("burpee")


def _feed(tracker: ExerciseTracker, left: np.ndarray, right: np.ndarray):
    ex = tracker.exercise
    state = None
    for i, (lv, rv) in enumerate(zip(left, right)):
        state = tracker.update({ex.angles[0]: lv, ex.angles[1]: rv, "unrelated": 1.0}, i / FPS)
    return state


def test_bilateral_squat_symmetry_and_one_side_missing():
    tracker = ExerciseTracker(get_exercise("squat"))
    left = np.concatenate([_hold(5, 1), _segment(5, 100, 2), _segment(5, 100, 2), _hold(5, 1)])
    right = np.concatenate([_hold(5, 1), _segment(5, 70, 2), _segment(5, 70, 2), _hold(5, 1)])
    right[int(3.2 * FPS):int(4.6 * FPS)] = np.nan  # right knee unreliable for most of the second squat
    state = _feed(tracker, left, right)
    assert state.count == 2 and state.counts_by_side == {"both": 2}
    first = tracker.reps[0]
    assert first.side == "both"
    assert first.side_rom["left"].span_deg == pytest.approx(95, abs=0.5)
    assert first.side_rom["right"].span_deg == pytest.approx(65, abs=0.5)
    assert first.symmetry.difference_deg == pytest.approx(30, abs=1)
    assert first.symmetry.ratio == pytest.approx(65 / 95, abs=0.01)
    summary = summarize("squat", tracker.reps)
    assert summary.count == 2 and summary.sides[0].side == "both"
    assert summary.symmetry_difference_deg == pytest.approx(30, abs=1)


def test_bilateral_frames_with_the_sides_far_apart_are_not_the_movement():
    # One knee bends to 100 deg while the other stays near straight (a step, a tucked leg, a misplaced knee):
    # no squat. The same bend on both sides, 30 deg apart, is one.
    ex = get_exercise("squat")
    one_leg = np.concatenate([_hold(5, 1), _segment(5, 100, 2), _hold(5, 1)])
    straight = np.concatenate([_hold(5, 1), _segment(5, 20, 2), _hold(5, 1)])
    tracker = ExerciseTracker(ex)
    assert _feed(tracker, one_leg, straight).count == 0
    assert tracker.incoherent_frames > 0
    tracker = ExerciseTracker(ex)
    assert _feed(tracker, one_leg, one_leg - 30).count == 1 and tracker.incoherent_frames == 0
    with pytest.raises(ValueError, match="max_side_difference_deg must be > 0"):
        replace(ex, max_side_difference_deg=0)


def test_a_squat_faster_than_a_second_is_a_jump_not_a_squat():
    ex = get_exercise("squat")
    quick = np.concatenate([_hold(5, 1), _segment(5, 90, 0.7), _hold(5, 1)])
    tracker = ExerciseTracker(ex)
    assert _feed(tracker, quick, quick).count == 0
    steady = np.concatenate([_hold(5, 1), _segment(5, 90, 1.6), _hold(5, 1)])
    tracker = ExerciseTracker(ex)
    assert _feed(tracker, steady, steady).count == 1


def test_unilateral_alternating_curls_counted_per_side():
    tracker = ExerciseTracker(get_exercise("elbow_curl"))
    rest, curl = _hold(10, 2), _segment(10, 140, 2)
    left = np.concatenate([curl, rest, curl, rest, _hold(10, 1)])
    right = np.concatenate([rest, curl, rest, curl, _hold(10, 1)])
    left = np.concatenate([_hold(10, 0.5), left])
    right = np.concatenate([_hold(10, 0.5), right])
    state = _feed(tracker, left, right)
    assert state.counts_by_side == {"left": 2, "right": 2}
    assert state.count == 4
    assert [r.side for r in tracker.reps] == ["left", "right", "left", "right"]
    assert [r.number for r in tracker.reps] == [1, 2, 3, 4]
    assert all(r.symmetry is None for r in tracker.reps)
    summary = summarize("elbow_curl", tracker.reps)
    assert {s.side: s.count for s in summary.sides} == {"left": 2, "right": 2}
    assert summary.symmetry_ratio == pytest.approx(1.0, abs=0.02)
    rows = rep_rows(tracker.reps)
    assert len(rows) == 4 and rows[0]["span_deg"] == pytest.approx(130, abs=0.5)


def test_current_rom_is_live():
    tracker = ExerciseTracker(get_exercise("lateral_raise"))
    for i, v in enumerate([10, 20, 40, 55]):
        state = tracker.update({"left_shoulder_abduction": v, "right_shoulder_abduction": v + 5}, i / FPS)
    assert state.current_rom["left"].min_deg == 10 and state.current_rom["left"].max_deg == 55
    assert state.current_rom["right"].span_deg == 45
    assert state.count == 0 and state.phase_by_side["both"] == "rest"


def test_every_exercise_counts_its_own_movement():
    for ex in EXERCISES.values():
        rest = ex.exit_deg + (ex.exit_deg - ex.enter_deg)  # well inside the rest zone
        far = ex.enter_deg + (ex.enter_deg - ex.exit_deg)  # well inside the active zone
        sig = np.concatenate([_hold(rest, 1), _segment(rest, far, 2), _segment(rest, far, 2), _hold(rest, 1)])
        tracker = ExerciseTracker(ex)
        state = _feed(tracker, sig, sig)
        assert state.count == (2 if ex.bilateral else 4), ex.name


def test_a_cycle_unmeasured_for_longer_than_max_gap_is_not_counted():
    rep = _segment(5, 100, 2.0)
    unseen = rep.copy()
    unseen[20:40] = np.nan  # 0.67 s unmeasured on the way down and up: the movement was not seen
    short_blink = rep.copy()
    short_blink[25:30] = np.nan  # 0.17 s: a blink of the model, still a seen repetition
    signal = np.concatenate([_hold(5, 1), unseen, _hold(5, 1), short_blink, _hold(5, 1)])
    counter = RepCounter(enter_deg=60, exit_deg=30, min_duration_s=0.5, max_gap_s=0.3)
    reps = _run(counter, signal)
    assert counter.count == 1 and counter.abandoned == 1
    assert reps[0].start_s > 3.0  # the second excursion
    assert reps[0].rom.max_deg == pytest.approx(100, abs=1)


def test_an_abandoned_cycle_waits_for_rest_before_counting_again():
    # Lost in the middle of a squat and found again at its bottom: the way back up is not a repetition.
    signal = np.concatenate([_hold(5, 1), _segment(5, 100, 2.0)[:25], np.full(15, np.nan),
                             _segment(5, 100, 2.0)[40:], _hold(5, 1)])
    counter = RepCounter(enter_deg=60, exit_deg=30, min_duration_s=0.5, max_gap_s=0.3)
    _run(counter, signal)
    assert counter.count == 0 and counter.abandoned == 1 and counter.phase == "rest"


def test_exercises_carry_the_gap_rule_and_refuse_a_bad_one():
    assert all(0 < e.max_gap_s < 1 for e in EXERCISES.values())
    assert RepCounter.for_exercise(get_exercise("squat")).max_gap_s == get_exercise("squat").max_gap_s
    with pytest.raises(ValueError, match="max_gap_s"):
        RepCounter(enter_deg=60, exit_deg=30, max_gap_s=0)

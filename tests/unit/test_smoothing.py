"""One Euro smoothing: less jitter, bounded lag, unreliable joints passed through and restarted."""

from __future__ import annotations

import numpy as np
import pytest

from rehab.runtime.smoothing import OneEuroFilter, PoseSmoother, smoothing_factor
from rehab.settings import SmoothingSettings

FPS = 30.0


def test_smoothing_factor_limits():
    assert smoothing_factor(1e6, 1 / FPS) == pytest.approx(1.0, abs=1e-4)  # no smoothing at a huge cutoff
    assert smoothing_factor(1e-6, 1 / FPS) == pytest.approx(0.0, abs=1e-4)
    # A first-order low-pass at 1 Hz sampled at 30 Hz: alpha = 1 / (1 + 30 / (2 pi)).
    assert smoothing_factor(1.0, 1 / FPS) == pytest.approx(1 / (1 + FPS / (2 * np.pi)))


def test_still_signal_jitter_is_reduced():
    rng = np.random.default_rng(0)
    f = OneEuroFilter((1,), min_cutoff_hz=1.0, beta=0.0)
    noisy = 5.0 + rng.normal(0.0, 1.0, 300)
    out = np.array([f(np.array([v]), i / FPS)[0] for i, v in enumerate(noisy)])
    assert out[30:].std() < 0.35 * noisy[30:].std()
    assert out[30:].mean() == pytest.approx(5.0, abs=0.3)


def test_beta_cuts_the_lag_of_a_fast_movement():
    t = np.arange(60) / FPS
    ramp = 100.0 * t  # 100 units per second
    lags = {}
    for beta in (0.0, 1.0):
        f = OneEuroFilter((1,), min_cutoff_hz=1.0, beta=beta)
        out = np.array([f(np.array([v]), ti)[0] for v, ti in zip(ramp, t)])
        lags[beta] = ramp[-1] - out[-1]
    assert lags[1.0] < 0.2 * lags[0.0]


def test_filter_input_checks():
    f = OneEuroFilter((2,))
    f(np.zeros(2), 0.0)
    with pytest.raises(ValueError, match="increase"):
        f(np.zeros(2), 0.0)
    with pytest.raises(ValueError, match="shape"):
        f(np.zeros(3), 1.0)
    with pytest.raises(ValueError, match="min_cutoff"):
        OneEuroFilter((2,), min_cutoff_hz=0.0)


def _pose(value: float, k: int = 3) -> np.ndarray:
    return np.full((k, 2), value)


def test_unreliable_joint_is_passed_through_and_restarts_fresh():
    smoother = PoseSmoother(3, SmoothingSettings(min_cutoff_hz=0.5, beta=0.0), min_score=0.5)
    scores = np.array([0.9, 0.9, 0.9])
    for i in range(10):
        smoother.update(_pose(100.0), scores, i / FPS, frame_height=480)
    # Joint 1 drops out (low score) for two frames and jumps elsewhere: reported raw, flagged unreliable.
    low = np.array([0.9, 0.1, 0.9])
    kp = _pose(100.0)
    kp[1] = (300.0, 300.0)
    out = smoother.update(kp, low, 10 / FPS, 480)
    assert out.reliable.tolist() == [True, False, True]
    assert out.keypoints_px[1].tolist() == [300.0, 300.0]
    smoother.update(kp, low, 11 / FPS, 480)
    # Back with a high score at a new place: the filter starts there, without dragging the old position in.
    out = smoother.update(kp, scores, 12 / FPS, 480)
    assert out.reliable.all()
    assert out.keypoints_px[1].tolist() == [300.0, 300.0]
    # A reliable joint that jumps is smoothed (it keeps its history).
    kp[0] = (300.0, 300.0)
    out = smoother.update(kp, scores, 13 / FPS, 480)
    assert 100.0 < out.keypoints_px[0, 0] < 200.0


def test_nan_keypoints_and_off_switch():
    kp = _pose(10.0)
    kp[2] = np.nan
    out = PoseSmoother(3, min_score=0.3).update(kp, np.ones(3), 0.0, 480)
    assert out.reliable.tolist() == [True, True, False]
    off = PoseSmoother(3, SmoothingSettings(enabled=False))
    for i in range(3):
        out = off.update(_pose(float(i * 50)), np.ones(3), i / FPS, 480)
    assert out.keypoints_px[0, 0] == 100.0


def test_gap_and_backwards_time_restart_the_filter():
    smoother = PoseSmoother(3, SmoothingSettings(max_gap_s=0.5))
    smoother.update(_pose(0.0), np.ones(3), 0.0, 480)
    smoother.update(_pose(0.0), np.ones(3), 1 / FPS, 480)
    assert smoother.update(_pose(200.0), np.ones(3), 2.0, 480).keypoints_px[0, 0] == 200.0
    assert smoother.update(_pose(50.0), np.ones(3), 1.0, 480).keypoints_px[0, 0] == 50.0


def test_same_motion_at_480p_and_1080p_smooths_alike():
    rng = np.random.default_rng(1)
    path = np.cumsum(rng.normal(0.0, 0.01, (90, 3, 2)), axis=0) + 0.5  # in frame heights
    results = []
    for height in (480, 1080):
        smoother = PoseSmoother(3)
        out = [smoother.update(p * height, np.ones(3), i / FPS, height).keypoints_px / height
               for i, p in enumerate(path)]
        results.append(np.array(out))
    np.testing.assert_allclose(results[0], results[1], atol=1e-9)


def test_shape_checks():
    with pytest.raises(ValueError, match=r"\(3, 2\)"):
        PoseSmoother(3).update(np.zeros((4, 2)), np.ones(4), 0.0, 480)
    with pytest.raises(ValueError, match="frame_height"):
        PoseSmoother(3).update(np.zeros((3, 2)), np.ones(3), 0.0, 0)

"""Person region tracking from hand-built poses."""

from __future__ import annotations

import numpy as np
import pytest

from rehab.core.skeleton import LSP14
from rehab.runtime.roi import (RoiDecision, RoiTracker, best_window, inside_fraction, roi_from_pose,
                               search_windows)
from rehab.settings import RoiSettings

FRAME = (640, 480)  # (w, h)


def standing(x0: float = 300.0, y0: float = 100.0, height: float = 300.0, score: float = 0.9):
    """A stick figure in the LSP-14 order, head top at (x0, y0)."""
    rel = {
        "head_top": (0, 0), "neck": (0, 0.15), "right_shoulder": (-0.12, 0.2), "left_shoulder": (0.12, 0.2),
        "right_elbow": (-0.15, 0.35), "left_elbow": (0.15, 0.35), "right_wrist": (-0.16, 0.5),
        "left_wrist": (0.16, 0.5), "right_hip": (-0.08, 0.55), "left_hip": (0.08, 0.55),
        "right_knee": (-0.08, 0.78), "left_knee": (0.08, 0.78), "right_ankle": (-0.08, 1.0), "left_ankle": (0.08, 1.0),
    }
    kp = np.array([(x0 + rel[j][0] * height, y0 + rel[j][1] * height) for j in LSP14.joints])
    return kp, np.full(LSP14.num_joints, score, dtype=np.float32)


def test_first_frame_is_a_whole_frame_pass_then_tracks():
    tracker = RoiTracker(RoiSettings(margin=0.1), min_score=0.3)
    first = tracker.next_region(FRAME)
    assert first.bootstrap and "first frame" in first.reason
    kp, scores = standing()
    decision = tracker.update(kp, scores, FRAME, used=first)
    assert not decision.bootstrap and decision.reason == "track"
    x1, y1, x2, y2 = decision.box_xyxy
    assert x1 < kp[:, 0].min() and x2 > kp[:, 0].max() and y1 < kp[:, 1].min() and y2 > kp[:, 1].max()
    # 10% of the 300 px height above the head top and below the ankles.
    assert y1 == pytest.approx(70.0) and y2 == pytest.approx(430.0)
    assert tracker.next_region(FRAME) == decision


def test_unconfident_joints_are_left_out_of_the_box():
    kp, scores = standing()
    kp[LSP14.index("left_wrist")] = (630.0, 20.0)  # a wild low-score guess
    scores[LSP14.index("left_wrist")] = 0.05
    decision = roi_from_pose(kp, scores, FRAME, RoiSettings(margin=0.1), min_score=0.3)
    assert decision.box_xyxy[2] < 500


@pytest.mark.parametrize("case, reason", [
    ("low mean score", "mean score"),
    ("too few joints", "confident joints"),
    ("left the frame", "inside the frame"),
    ("no pose", "no pose"),
])
def test_rebootstraps_when_the_person_is_lost(case, reason):
    tracker = RoiTracker(RoiSettings(min_mean_score=0.35, min_joints=4, min_inside_fraction=0.6), min_score=0.3)
    kp, scores = standing()
    tracker.update(kp, scores, FRAME, used=tracker.next_region(FRAME))
    if case == "low mean score":
        scores = np.full_like(scores, 0.2)
    elif case == "too few joints":
        # Three sure joints and eleven just under the threshold: the mean stays high, the count is too low.
        scores = np.where(np.arange(len(scores)) < 3, 1.0, 0.29).astype(np.float32)
        assert scores.mean() >= 0.35
    elif case == "left the frame":
        kp = kp + np.array([500.0, 0.0])
    elif case == "no pose":
        kp = scores = None
    decision = tracker.update(kp, scores, FRAME, used=tracker.next_region(FRAME))
    assert decision.bootstrap and reason in decision.reason
    assert tracker.next_region(FRAME).bootstrap


def test_frame_size_change_and_periodic_rebootstrap():
    tracker = RoiTracker(RoiSettings(rebootstrap_every_frames=3))
    kp, scores = standing()
    kinds = []
    for _ in range(8):
        region = tracker.next_region(FRAME)
        kinds.append("B" if region.bootstrap else "T")
        tracker.update(kp, scores, FRAME, used=region)
    assert "".join(kinds) == "BTTTBTTT"
    assert tracker.next_region((320, 240)).bootstrap


def test_off_switch():
    tracker = RoiTracker(RoiSettings(enabled=False))
    kp, scores = standing()
    tracker.update(kp, scores, FRAME, used=tracker.next_region(FRAME))
    assert tracker.next_region(FRAME) == RoiDecision(None, "whole frame: ROI tracking off")


def test_inside_fraction():
    assert inside_fraction((0, 0, 10, 10), (100, 100)) == 1.0
    assert inside_fraction((-10, 0, 10, 10), (100, 100)) == pytest.approx(0.5)
    assert inside_fraction((200, 200, 300, 300), (100, 100)) == 0.0
    assert inside_fraction((5, 5, 5, 9), (100, 100)) == 0.0


@pytest.mark.parametrize("size", [(1768, 994), (1080, 1920), (640, 480), (480, 480)])
def test_search_windows_cover_the_frame_with_overlapping_squares(size):
    w, h = size
    windows = search_windows(size, (1.0, 0.5), overlap=0.34)
    assert windows[0] is None  # the whole frame first
    squares = windows[1:]
    assert len(set(squares)) == len(squares)
    for x1, y1, x2, y2 in squares:
        assert x2 - x1 == pytest.approx(y2 - y1)  # square
        assert -1e-9 <= x1 and x2 <= w + 1e-9 and -1e-9 <= y1 and y2 <= h + 1e-9  # inside the frame
    for scale in (1.0, 0.5):
        side = scale * min(w, h)
        level = [b for b in squares if b[2] - b[0] == pytest.approx(side)]
        if side == max(w, h):
            continue  # a square frame at scale 1 is the whole frame itself
        # Every point of the frame lies in some window of each scale, and neighbours overlap.
        for px in np.linspace(0, w, 9):
            for py in np.linspace(0, h, 9):
                assert any(b[0] <= px <= b[2] and b[1] <= py <= b[3] for b in level)
        xs = sorted({b[0] for b in level})
        assert all(b - a <= side * (1 - 0.34) + 1e-6 for a, b in zip(xs, xs[1:]))


def test_no_scales_search_the_whole_frame_only():
    assert search_windows((640, 480), (), 0.34) == [None]


def test_a_frame_that_fits_the_model_input_is_searched_whole_only():
    # A 96x160 clip fits a 192-px input: the model sees all of it, and a window would only enlarge it.
    assert search_windows((96, 160), (1.0, 0.6), 0.34, input_side=192) == [None]
    assert search_windows((192, 120), (1.0, 0.6), 0.34, input_side=192) == [None]
    # A larger frame is searched at every scale, windows narrower than the input included: a 256-px model sees a
    # 216-px window of a 640x360 frame at 1.2 input pixels per source pixel, the whole frame at 0.4.
    assert len(search_windows((1280, 720), (1.0, 0.6), 0.34, input_side=192)) == 16
    kept = search_windows((640, 360), (1.0, 0.6), 0.34, input_side=256)
    assert len(kept) == 16 and sum(b[2] - b[0] == pytest.approx(216) for b in kept[1:]) == 12
    # ...but not below half the input: a 300x60 strip's 36-px windows would be blown up 7x.
    assert search_windows((300, 60), (1.0, 0.6), 0.34, input_side=256) == [None]
    strip = search_windows((600, 200), (1.0, 0.6), 0.34, input_side=256)  # 200-px squares kept, 120-px ones not
    assert len(strip) > 1 and all(b[2] - b[0] == pytest.approx(200) for b in strip[1:])


def test_the_search_follows_the_widest_view_that_can_be_tracked():
    # Views widest first: the whole frame sees nobody, window 1 a far figure (present, 2 confident joints),
    # window 2 the patient (present, 12 joints).
    presences, joints = [0.1, 0.9, 0.8], [0, 2, 12]
    assert best_window(presences, 0.5, joints, min_joints=4) == 2
    assert best_window(presences, 0.5) == 1  # without joint counts: the widest present view
    assert best_window(presences, 0.5, [0, 2, 3], min_joints=4) == 1  # none trackable: the widest present one
    assert best_window([0.1, 0.3, 0.2], 0.5, joints, min_joints=4) == 1  # nobody present: the most present
    assert best_window([0.9, 0.9, 0.9], 0.5, [14, 14, 14], min_joints=4) == 0  # a wider view wins among equals
    assert best_window(presences, None, joints, min_joints=4) == 0  # no presence output: the whole frame


def test_nobody_there_makes_the_next_frame_a_search():
    tracker = RoiTracker(RoiSettings(), min_score=0.2)
    kp = np.array([[100.0 + 10 * i, 100.0 + 20 * i] for i in range(14)])
    tracker.update(kp, np.full(14, 0.9), (640, 480), used=RoiDecision(None, "first"))
    assert not tracker.next_region((640, 480)).bootstrap
    decision = tracker.update(kp, np.full(14, 0.9), (640, 480), used=RoiDecision((0, 0, 10, 10), "track"),
                              absent_reason="nobody here (presence 0.10 < 0.50)")
    assert decision.bootstrap and "nobody here" in decision.reason

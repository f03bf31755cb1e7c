"""Drawing: skeleton with confidence colours, angle labels, repetition panel; sizes follow the frame height."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from rehab.analysis.exercises import get_exercise
from rehab.analysis.reps import ExerciseTracker
from rehab.core.angles import joint_angles
from rehab.core.skeleton import LSP14, joint_set_from_names
from rehab.analysis.panel import panel_lines
from rehab.runtime.draw import GREY, DrawStyle, draw_frame, put_text, score_colour

MIN_SCORE = 0.3


def figure(height_px: int):
    """A standing stick figure (LSP-14) scaled to a frame of ``height_px``, with its knees bent."""
    s = height_px / 480.0
    pts = {
        "head_top": (320, 60), "neck": (320, 110), "right_shoulder": (280, 125), "left_shoulder": (360, 125),
        "right_elbow": (260, 190), "left_elbow": (380, 190), "right_wrist": (255, 250), "left_wrist": (385, 250),
        "right_hip": (295, 260), "left_hip": (345, 260), "right_knee": (270, 340), "left_knee": (370, 340),
        "right_ankle": (295, 420), "left_ankle": (345, 420),
    }
    kp = np.array([pts[j] for j in LSP14.joints], dtype=np.float64) * s
    scores = np.full(LSP14.num_joints, 0.9, dtype=np.float32)
    return kp, scores


def draw(height_px: int, unreliable: tuple[str, ...] = (), **kwargs):
    frame = np.full((height_px, height_px * 4 // 3, 3), 40, np.uint8)
    kp, scores = figure(height_px)
    for j in unreliable:
        scores[LSP14.index(j)] = 0.1
    reliable = scores >= MIN_SCORE
    angles = {k: float(v) for k, v in joint_angles(kp, LSP14.joints, scores, MIN_SCORE).items()}
    exercise = get_exercise("squat")
    tracker = ExerciseTracker(exercise)
    for i, v in enumerate([5, 40, 80, 100, 60, 20, 5, 30]):
        state = tracker.update({"left_knee_flexion": v, "right_knee_flexion": v * 0.9}, i * 0.25)
    out = draw_frame(frame.copy(), keypoints_px=kp, scores=scores, reliable=reliable,
                     joint_set=joint_set_from_names(LSP14.joints), angles_deg=angles, min_score=MIN_SCORE,
                     angle_names=exercise.angles, panel=panel_lines(state, exercise), **kwargs)
    return frame, out, kp, state


def test_style_scales_with_height():
    small, big = DrawStyle.for_height(480), DrawStyle.for_height(1080)
    assert 1 <= small.line_px < big.line_px
    assert big.font_scale / small.font_scale == pytest.approx(1080 / 480, rel=0.1)
    # Readable: the digit height at 480p is at least ~10 px, and grows with the frame.
    h480 = cv2.getTextSize("0", cv2.FONT_HERSHEY_SIMPLEX, small.font_scale, small.text_px)[0][1]
    h1080 = cv2.getTextSize("0", cv2.FONT_HERSHEY_SIMPLEX, big.font_scale, big.text_px)[0][1]
    assert h480 >= 10 and h1080 >= 2 * h480


def test_score_colours():
    assert score_colour(MIN_SCORE, MIN_SCORE) == (0, 0, 255)  # red at the threshold
    assert score_colour(1.0, MIN_SCORE) == (0, 200, 0)  # green when sure
    mid = score_colour((1 + MIN_SCORE) / 2, MIN_SCORE)
    assert mid[1] > 200 and mid[2] > 200  # yellow in between
    assert score_colour(float("nan"), MIN_SCORE) == GREY


@pytest.mark.parametrize("height", [480, 1080])
def test_skeleton_angles_and_panel_are_drawn(height):
    frame, out, kp, state = draw(height)
    changed = np.abs(out.astype(int) - frame.astype(int)).sum(-1) > 0
    # Every joint has paint on it.
    for x, y in kp.round().astype(int):
        assert changed[y, x]
    # The middle of a limb (left thigh) is painted in the confident colour (green-ish for 0.9).
    mid = ((kp[LSP14.index("left_hip")] + kp[LSP14.index("left_knee")]) / 2).round().astype(int)
    b, g, r = out[mid[1], mid[0]].astype(int)
    assert g > 150 and b < 100
    # The angle label beside the left knee: text pixels within a few joint radii.
    style = DrawStyle.for_height(height)
    knee = kp[LSP14.index("left_knee")].astype(int)
    r = 12 * style.joint_radius_px
    assert changed[knee[1] - r:knee[1] + r, knee[0]:knee[0] + r].mean() > 0.05
    # The panel sits top-left and is darker than the background, with light text in it.
    panel = out[style.margin_px:style.margin_px * 6, style.margin_px:style.margin_px * 20]
    assert (panel.max(-1) < 40).mean() > 0.3 and (panel.min(-1) > 200).any()


def test_unreliable_joints_are_grey_or_omitted():
    _, out, kp, _ = draw(480, unreliable=("left_ankle",))
    x, y = kp[LSP14.index("left_ankle")].round().astype(int)
    r = DrawStyle.for_height(480).joint_radius_px
    ring = out[y - r - 1:y + r + 2, x - r - 1:x + r + 2].reshape(-1, 3).astype(int)
    assert (np.abs(ring - np.array(GREY)).sum(-1) < 60).any()
    frame, hidden, _, _ = draw(480, unreliable=("left_ankle",), draw_unreliable=False)
    assert np.array_equal(hidden[y - r:y + r, x - r:x + r], frame[y - r:y + r, x - r:x + r])


def test_panel_text_reports_count_and_range():
    _, _, _, state = draw(480)
    lines = panel_lines(state, get_exercise("squat"))
    assert lines[0] == "Squat" and lines[1] == "Reps: 1"
    assert lines[2].startswith("L ROM 5-30°") and "(25°)" in lines[2]
    assert lines[-1].startswith("Last #1: 90°")  # counted on the mean of both knees: 0.95 x (100 - 5)
    curl = get_exercise("elbow_curl")
    tracker = ExerciseTracker(curl)
    state = tracker.update({"left_elbow_flexion": 10.0}, 0.0)
    assert panel_lines(state, curl)[1] == "Reps: L 0 | R 0"
    assert panel_lines(state, curl)[3] == "R ROM --"


def test_put_text_draws_a_degree_ring():
    img = np.zeros((60, 200, 3), np.uint8)
    style = DrawStyle.for_height(480)
    w_deg, _ = put_text(img, "90°", (10, 40), style)
    w_plain = cv2.getTextSize("90", cv2.FONT_HERSHEY_SIMPLEX, style.font_scale, style.text_px)[0][0]
    assert w_deg > w_plain
    assert img[:, 10 + w_plain:10 + w_deg].any()  # the ring is there

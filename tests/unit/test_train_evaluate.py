"""Evaluation maths on hand-built predictions: PCK@0.2 torso, PCKh head segment, angle errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from rehab.core.skeleton import LSP14
from rehab.accuracy import Predictions, angle_errors, head_sizes, pck_torso, pckh_head
from train.predict import parse_source


def _standing() -> np.ndarray:
    """A person in LSP-14 order, pixels: torso left shoulder (60, 40) to right hip (40, 90)."""
    pts = {
        "right_ankle": (40, 170), "right_knee": (40, 130), "right_hip": (40, 90), "left_hip": (60, 90),
        "left_knee": (60, 130), "left_ankle": (60, 170), "right_wrist": (20, 100), "right_elbow": (30, 70),
        "right_shoulder": (40, 40), "left_shoulder": (60, 40), "left_elbow": (70, 70), "left_wrist": (80, 100),
        "neck": (50, 35), "head_top": (50, 10),
    }
    return np.array([pts[j] for j in LSP14.joints], dtype=np.float64)


def _pred(kp: np.ndarray, gt: np.ndarray) -> Predictions:
    n = kp.shape[0]
    return Predictions(kp, np.ones(kp.shape[:2]), gt, np.ones(kp.shape[:2], bool), np.full((n, 4), np.nan),
                       LSP14.joints)


def test_pck_counts_joints_within_a_fifth_of_the_torso():
    gt = _standing()[None]
    torso = np.hypot(20, 50)  # left shoulder (60, 40) to right hip (40, 90)
    pred = gt.copy()
    pred[0, LSP14.index("left_knee")] += (0.19 * torso, 0)  # inside
    pred[0, LSP14.index("right_knee")] += (0.21 * torso, 0)  # outside
    pred[0, LSP14.index("head_top")] += (100, 0)  # not a limb joint: outside the mean
    result = pck_torso(_pred(pred, gt), LSP14)
    assert result.mean == pytest.approx(100 * 11 / 12)
    assert result.per_joint[LSP14.index("right_knee")] == 0
    assert result.per_joint[LSP14.index("head_top")] == 0 and not result.included[LSP14.index("head_top")]


def test_pckh_uses_the_neck_to_head_top_segment_for_lsp():
    gt = _standing()[None]
    p = _pred(gt.copy(), gt)
    assert head_sizes(p, LSP14)[0] == pytest.approx(25.0)
    pred = gt.copy()
    pred[0, LSP14.index("left_wrist")] += (0, 13.0)  # > 0.5 x 25
    result = pckh_head(_pred(pred, gt), LSP14)
    assert result.mean == pytest.approx(100 * 13 / 14)


def test_angle_errors_are_zero_for_perfect_and_known_for_a_moved_ankle():
    gt = _standing()[None]
    assert angle_errors(_pred(gt.copy(), gt))["knee"]["median_abs_deg"] == 0.0
    pred = gt.copy()
    # Move the right ankle 40 px sideways: the right knee bends by atan(40 / 40) = 45 degrees.
    pred[0, LSP14.index("right_ankle")] = (80, 130 + 40)
    knee = angle_errors(_pred(pred, gt))["knee"]
    assert knee["count"] == 2
    assert knee["mean_abs_deg"] == pytest.approx(45.0 / 2)
    assert knee["median_abs_deg"] == pytest.approx(45.0 / 2)


def test_parse_source_spec():
    src = parse_source("lsp:test:300:full_image")
    assert (src.kind, src.split, src.limit, src.crop) == ("lsp", "test", 300, "full_image")
    with pytest.raises(ValueError, match="kind must be one of"):
        parse_source("lsq:test")


def test_cli_import_does_not_load_torch():
    code = "import sys, train.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

"""The frame loop on a tiny real ONNX model (plumbing, bad input) and on scripted poses (the logic).

The scripted model stands in for a trained one where a test needs to know the true pose: it follows the
PoseModel contract (``info.joint_names``, ``predict(image, bbox_xyxy) -> Pose``) and records the boxes it
was asked about.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from rehab.analysis.exercises import get_exercise
from rehab.core.skeleton import LSP14
from rehab.pipeline import STAGES, FrameResult, Pipeline
from rehab.runtime.metadata import ModelInfo
from rehab.runtime.model import Pose, PoseModel
from rehab.settings import RuntimeSettings
from tests.e2e.browser_support import write_tiny_pose_model
from tests.unit.test_exercises import pose as angle_pose


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> PoseModel:
    path = write_tiny_pose_model(tmp_path_factory.mktemp("model") / "tiny.onnx")
    return PoseModel.load(path, threads=1)


class ScriptedModel:
    """Returns the poses of a script, one per call, mapped into the frame; records the boxes asked for."""

    def __init__(self, keypoints: list[np.ndarray], scores: list[np.ndarray] | None = None) -> None:
        self.info = ModelInfo(name="scripted", joint_names=LSP14.joints, limbs=LSP14.limbs,
                              flip_pairs=LSP14.flip_pairs, input_size=(192, 192), heatmap_size=(48, 48),
                              heatmap_stride=4.0, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
        self.keypoints = keypoints
        self.scores = scores or [np.full(LSP14.num_joints, 0.9, np.float32)] * len(keypoints)
        self.boxes: list = []

    def predict(self, image_bgr: np.ndarray, bbox_xyxy=None) -> Pose:
        i = len(self.boxes)
        self.boxes.append(bbox_xyxy)
        return Pose(keypoints_px=self.keypoints[i], scores=self.scores[i], joint_names=LSP14.joints)


def frame(h: int = 480, w: int = 640) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_result_of_a_real_onnx_model(tiny_model):
    pipe = Pipeline(tiny_model, exercise="squat")
    results = [pipe.process(frame(), i / 30) for i in range(3)]
    r = results[-1]
    assert isinstance(r, FrameResult) and r.frame_index == 2 and r.timestamp_s == pytest.approx(2 / 30)
    assert set(r.timings_ms) == set(STAGES) | {"total"}
    assert all(v >= 0 for v in r.timings_ms.values())
    assert r.total_ms >= sum(r.timings_ms[s] for s in STAGES) - 1e-6
    assert r.frame_bgr.shape == (480, 640, 3) and not r.frame_bgr.flags.writeable
    assert r.reliable.shape == (14,) and r.raw_pose.joint_names == LSP14.joints
    assert set(r.angles_deg) >= {"left_knee_flexion", "trunk_lean"}
    assert r.reps is not None and r.reps.exercise == "squat"
    assert r.anonymized and r.anonymization
    with pytest.raises(TypeError):
        r.angles_deg["x"] = 1.0  # read-only


@pytest.mark.parametrize("bad, match", [
    (np.zeros((48, 64, 3), np.float32), r"frame_bgr must have dtype uint8"),
    (np.zeros((48, 64, 2), np.uint8), r"frame_bgr must have shape \(H, W, 3\)"),
    (np.zeros((0, 64, 3), np.uint8), r"frame_bgr is empty"),
    (np.zeros((5, 48, 64, 3), np.uint8), r"\(5, 48, 64, 3\)"),
    ("frame.png", r"numpy array"),
])
def test_bad_frames_are_refused_clearly(tiny_model, bad, match):
    with pytest.raises(ValueError, match=match):
        Pipeline(tiny_model).process(bad, 0.0)


def test_grayscale_frames_are_handled(tiny_model):
    r = Pipeline(tiny_model).process(np.full((48, 64), 128, np.uint8), 0.0)
    assert r.frame_bgr.shape == (48, 64, 3)


def test_timestamps_must_move_forward(tiny_model):
    pipe = Pipeline(tiny_model)
    pipe.process(frame(), 1.0)
    with pytest.raises(ValueError, match="backwards"):
        pipe.process(frame(), 0.5)
    with pytest.raises(ValueError, match="finite"):
        pipe.process(frame(), math.nan)
    pipe.reset()
    assert pipe.process(frame(), 0.0).frame_index == 0


def test_anonymisation_off_is_explicit_and_reported(tiny_model):
    settings = RuntimeSettings().with_overrides(anonymize={"enabled": False}, draw={"enabled": False})
    raw = frame()
    r = Pipeline(tiny_model, settings).process(raw, 0.0)
    assert not r.anonymized and r.anonymization == "off"
    assert np.array_equal(r.frame_bgr, raw)
    # With the defaults the same frame comes out changed (blurred somewhere).
    assert not np.array_equal(Pipeline(tiny_model).process(raw, 0.0).frame_bgr, raw)


def test_scripted_squats_flow_through_roi_smoothing_angles_and_reps():
    knee = [5] * 10 + list(np.linspace(5, 100, 15)) + [100] * 5 + list(np.linspace(100, 5, 15)) + [5] * 10
    knee = knee * 2
    script = [angle_pose(knee_flexion=k, hip_flexion=k * 0.8) for k in knee]
    model = ScriptedModel(script)
    # Not under test here: the face detector, and the second (refining) pass on bootstrap frames.
    settings = RuntimeSettings().with_overrides(anonymize={"face_detector": False}, roi={"refine_bootstrap": False})
    pipe = Pipeline(model, settings, exercise=get_exercise("squat"))
    results = [pipe.process(frame(), i / 30) for i in range(len(script))]
    assert results[0].roi_xyxy is None and model.boxes[0] is None  # whole-frame bootstrap
    assert results[1].roi_reason == "track" and model.boxes[1] is not None
    x1, y1, x2, y2 = model.boxes[1]
    assert x1 < script[0][:, 0].min() and y2 > script[0][:, 1].max()
    assert results[-1].reps.count == 2
    assert [r.frame_index for r in results if r.new_rep is not None] == [
        i for i, r in enumerate(results) if r.new_rep is not None]
    rep = pipe.reps[0]
    # One Euro lag shaves a little off the peak; the range is still that of the movement.
    assert 85 < rep.rom.max_deg <= 100.5 and rep.rom.min_deg < 10
    assert pipe.summary().count == 2
    assert results[12].angles_deg["left_knee_flexion"] == pytest.approx(results[12].angles_deg["right_knee_flexion"])


def test_low_scores_mean_no_person_and_whole_frame_blur():
    kp = angle_pose()
    model = ScriptedModel([kp, kp], [np.full(14, 0.05, np.float32), np.full(14, 0.9, np.float32)])
    pipe = Pipeline(model, RuntimeSettings().with_overrides(anonymize={"face_detector": False},
                                                            roi={"refine_bootstrap": False}))
    lost = pipe.process(frame(), 0.0)
    assert lost.pose is None and not lost.person_found
    assert not lost.reliable.any() and all(math.isnan(v) for v in lost.angles_deg.values())
    assert lost.anonymization.startswith("whole frame")
    assert model.boxes == [None]  # and the next frame bootstraps again
    found = pipe.process(frame(), 1 / 30)
    assert found.person_found and found.anonymization == "head" and found.roi_xyxy is None
    assert found.pose.keypoints_px.shape == (14, 2)


def test_a_bootstrap_frame_is_refined_on_the_region_it_found():
    coarse = angle_pose()
    fine = coarse + np.array([4.0, -3.0])  # what the model sees at full resolution on the crop
    model = ScriptedModel([coarse, fine, fine])
    pipe = Pipeline(model, RuntimeSettings().with_overrides(anonymize={"face_detector": False}))
    first = pipe.process(frame(), 0.0)
    assert model.boxes[0] is None and model.boxes[1] is not None  # whole frame, then the region found there
    x1, y1, x2, y2 = model.boxes[1]
    assert x1 < coarse[:, 0].min() and y2 > coarse[:, 1].max()
    assert first.roi_reason.startswith("bootstrap") and "refined" in first.roi_reason
    assert first.roi_xyxy == pytest.approx(model.boxes[1])
    np.testing.assert_allclose(first.pose.keypoints_px, fine, atol=1e-4)  # the frame reports the refined pass
    second = pipe.process(frame(), 1 / 30)
    assert second.roi_reason == "track" and len(model.boxes) == 3


def test_a_lost_person_is_not_refined():
    kp = angle_pose()
    model = ScriptedModel([kp], [np.full(14, 0.05, np.float32)])
    r = Pipeline(model, RuntimeSettings().with_overrides(anonymize={"face_detector": False})).process(frame(), 0.0)
    assert model.boxes == [None] and not r.person_found  # one pass: nothing to refine on

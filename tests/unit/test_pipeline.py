"""The frame loop on a tiny real ONNX model (plumbing, bad input) and on scripted poses (the logic).

The scripted model stands in for a trained one where a test needs to know the true pose: it follows the
PoseModel contract (``info.joint_names``, ``predict(image, bbox_xyxy) -> Pose``) and records the boxes it
was asked about.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from rehab.analysis.exercises import get_exercise
from rehab.core.skeleton import LSP14
from rehab.pipeline import STAGES, FrameResult, Pipeline
from rehab.runtime.metadata import ModelInfo
from rehab.runtime.model import Pose, PoseModel
from rehab.settings import RuntimeSettings
from tests.e2e.browser_support import write_tiny_pose_model
from tests.stick_figure import pose as angle_pose


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

    def predict_checked(self, image_bgr: np.ndarray, bbox_xyxy=None) -> Pose:
        i = len(self.boxes)
        self.boxes.append(bbox_xyxy)
        return Pose(keypoints_px=self.keypoints[i], scores=self.scores[i], joint_names=LSP14.joints)


# A search over the whole frame only: one model call per frame, so a script maps one pose to one call. These
# tests look at single frames, so a person is reported from the first frame found (no confirmation frame).
WHOLE_FRAME_SEARCH = {"search_window_scales": (), "confirm_frames": 1}


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
    # 1.9 s a squat, 1.3 s of it past 30 deg: slower than the 1 s a squat needs.
    knee = [5] * 10 + list(np.linspace(5, 100, 25)) + [100] * 5 + list(np.linspace(100, 5, 25)) + [5] * 10
    knee = knee * 2
    script = [angle_pose(knee_flexion=k, hip_flexion=k * 0.8) for k in knee]
    model = ScriptedModel(script)
    # Not under test here: the face detector, the search windows and the second (refining) pass on bootstrap frames.
    settings = RuntimeSettings().with_overrides(anonymize={"face_detector": False},
                                                roi={"refine_bootstrap": False, "search_window_scales": ()})
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
    pipe = Pipeline(model, RuntimeSettings().with_overrides(
        anonymize={"face_detector": False},
        roi={"refine_bootstrap": False, "search_window_scales": (), "confirm_frames": 1}))
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
    pipe = Pipeline(model, RuntimeSettings().with_overrides(anonymize={"face_detector": False}, roi=WHOLE_FRAME_SEARCH))
    first = pipe.process(frame(), 0.0)
    assert model.boxes[0] is None and model.boxes[1] is not None  # whole frame, then the region found there
    x1, y1, x2, y2 = model.boxes[1]
    assert x1 < coarse[:, 0].min() and y2 > coarse[:, 1].max()
    assert first.roi_reason.startswith("search: whole frame") and "refined" in first.roi_reason
    assert first.roi_xyxy == pytest.approx(model.boxes[1])
    np.testing.assert_allclose(first.pose.keypoints_px, fine, atol=1e-4)  # the frame reports the refined pass
    second = pipe.process(frame(), 1 / 30)
    assert second.roi_reason == "track" and len(model.boxes) == 3


def test_a_lost_person_is_not_refined():
    kp = angle_pose()
    model = ScriptedModel([kp], [np.full(14, 0.05, np.float32)])
    settings = RuntimeSettings().with_overrides(anonymize={"face_detector": False}, roi=WHOLE_FRAME_SEARCH)
    r = Pipeline(model, settings).process(frame(), 0.0)
    assert model.boxes == [None] and not r.person_found  # one pass: nothing to refine on


class PresenceModel:
    """A model with a presence output that sees the scripted person only in regions holding the person's centre.

    Elsewhere it answers as a network does on background: a confident-looking pose at a fixed spot (a tree)
    with low presence. ``person`` None means an empty scene.
    """

    def __init__(self, person: np.ndarray | None, threshold: float = 0.5) -> None:
        self.info = SimpleNamespace(name="presence", joint_names=LSP14.joints, has_presence=True,
                                    presence_threshold=threshold, presence_acquire_threshold=None,
                                    input_size=(192, 192))
        self.person = person
        self.calls: list = []

    def _pose(self, frame_size, box) -> Pose:
        w, h = frame_size
        x1, y1, x2, y2 = (0.0, 0.0, w, h) if box is None else box
        phantom = angle_pose() * 0.2 + np.array([10.0, 10.0])
        if self.person is None:
            return Pose(phantom, np.full(14, 0.9, np.float32), LSP14.joints, presence=0.05)
        cx, cy = self.person.mean(0)
        if not (x1 <= cx <= x2 and y1 <= cy <= y2):
            return Pose(phantom, np.full(14, 0.9, np.float32), LSP14.joints, presence=0.05)
        # A person small in the model's input (a wide frame letterboxed) is seen, but less surely.
        height = np.ptp(self.person[:, 1]) / max(x2 - x1, y2 - y1)
        return Pose(self.person, np.full(14, 0.9, np.float32), LSP14.joints,
                    presence=0.95 if height >= 0.4 else 0.3)

    def predict_checked(self, image_bgr, bbox_xyxy=None) -> Pose:
        self.calls.append([bbox_xyxy])
        return self._pose((image_bgr.shape[1], image_bgr.shape[0]), bbox_xyxy)

    def predict_batch_checked(self, images, boxes) -> list[Pose]:
        self.calls.append(list(boxes))
        return [self._pose((im.shape[1], im.shape[0]), b) for im, b in zip(images, boxes)]


NO_FACE_DETECTOR = RuntimeSettings().with_overrides(anonymize={"face_detector": False}, roi={"confirm_frames": 1})


def test_nobody_there_means_no_skeleton_no_angles_no_counting():
    model = PresenceModel(person=None)
    pipe = Pipeline(model, NO_FACE_DETECTOR, exercise="squat")
    results = [pipe.process(frame(), i / 30) for i in range(5)]
    for r in results:
        assert not r.person_found and r.pose is None and r.presence == pytest.approx(0.05)
        assert all(math.isnan(v) for v in r.angles_deg.values()) and r.reps.count == 0
        assert r.roi_reason.startswith("search")
    # Every frame searched again: a batch of windows each time, never a track of the phantom pose.
    assert all(len(c) > 1 for c in model.calls)


def test_a_person_entering_far_from_the_last_region_is_found_by_the_search():
    w, h = 1280, 480
    person = angle_pose() * 0.8 + np.array([1100.0, 60.0])  # at the right edge of a wide frame
    model = PresenceModel(person)
    pipe = Pipeline(model, NO_FACE_DETECTOR)
    first = pipe.process(frame(h, w), 0.0)
    windows = model.calls[0]
    assert windows[0] is None and len(windows) >= 3  # whole frame + square windows across the width
    assert first.person_found and first.presence == pytest.approx(0.95)
    assert first.roi_reason.startswith("search: window") and "refined" in first.roi_reason
    np.testing.assert_allclose(first.pose.keypoints_px, person, atol=1e-6)
    second = pipe.process(frame(h, w), 1 / 30)
    assert second.roi_reason == "track" and len(model.calls[-1]) == 1


def test_low_presence_while_tracking_drops_the_person_and_searches_again():
    person = angle_pose()
    model = PresenceModel(person)
    pipe = Pipeline(model, NO_FACE_DETECTOR)
    assert pipe.process(frame(), 0.0).person_found
    model.person = None  # the patient walks out
    gone = pipe.process(frame(), 1 / 30)
    # the tracked region says nobody, and so does the search of the same frame
    assert not gone.person_found and gone.roi_reason.startswith("search") and gone.roi_reason.endswith("(track lost)")
    assert len(model.calls[-2]) == 1 and len(model.calls[-1]) > 1  # the track's one crop, then the windows
    assert pipe.process(frame(), 2 / 30).roi_reason.startswith("search")


def test_a_track_that_drifted_off_the_person_is_searched_again_on_the_same_frame():
    model = PresenceModel(angle_pose())
    pipe = Pipeline(model, NO_FACE_DETECTOR)
    assert pipe.process(frame(), 0.0).person_found
    moved = angle_pose() + np.array([330.0, 0.0])  # the person is no longer in the tracked region
    model.person = moved
    r = pipe.process(frame(), 1 / 30)
    assert r.person_found and r.roi_reason.endswith("(track lost)")
    np.testing.assert_allclose(r.raw_pose.keypoints_px, moved, atol=1e-6)
    off = NO_FACE_DETECTOR.with_overrides(roi={"search_on_loss": False})
    model = PresenceModel(angle_pose())
    pipe = Pipeline(model, off)
    pipe.process(frame(), 0.0)
    model.person = moved
    assert not pipe.process(frame(), 1 / 30).person_found  # without it: one frame lost, found on the next


def test_a_person_is_reported_once_found_on_confirm_frames_in_a_row():
    model = PresenceModel(angle_pose())
    pipe = Pipeline(model, RuntimeSettings().with_overrides(anonymize={"face_detector": False}), exercise="squat")
    assert pipe.settings.roi.confirm_frames == 2
    first, second = pipe.process(frame(), 0.0), pipe.process(frame(), 1 / 30)
    assert first.presence == pytest.approx(0.95) and not first.person_found and first.pose is None
    assert all(math.isnan(v) for v in first.angles_deg.values())
    assert first.anonymization.startswith("whole frame")  # unconfirmed: the whole frame stays blurred
    assert second.person_found and second.pose is not None
    model.person = None
    assert not pipe.process(frame(), 2 / 30).person_found
    model.person = angle_pose()
    assert not pipe.process(frame(), 3 / 30).person_found  # back: confirmed afresh
    assert pipe.process(frame(), 4 / 30).person_found
    with pytest.raises(ValueError, match="confirm_frames must be >= 1"):
        RuntimeSettings().with_overrides(roi={"confirm_frames": 0})


def test_the_presence_threshold_comes_from_the_model_unless_the_settings_say_otherwise():
    model = PresenceModel(None, threshold=0.01)  # presence 0.05 passes the model's own threshold
    assert Pipeline(model, NO_FACE_DETECTOR).process(frame(), 0.0).person_found
    strict = NO_FACE_DETECTOR.with_overrides(scores={"presence_min": 0.5})
    assert not Pipeline(model, strict).process(frame(), 0.0).person_found


class FixedPresenceModel(PresenceModel):
    """The person everywhere, at the presence the test sets."""

    def __init__(self, presence: float) -> None:
        super().__init__(angle_pose(), threshold=0.2)
        self.info.presence_acquire_threshold = 0.5
        self.presence = presence

    def _pose(self, frame_size, box) -> Pose:
        return Pose(self.person, np.full(14, 0.9, np.float32), LSP14.joints, presence=self.presence)


def test_a_person_is_acquired_at_the_higher_presence_and_kept_at_the_lower_one():
    model = FixedPresenceModel(0.3)  # between the two thresholds: not enough to be acquired
    pipe = Pipeline(model, NO_FACE_DETECTOR)
    assert (pipe.presence_min, pipe.presence_acquire_min) == (0.2, 0.5)  # both from the model's metadata
    first = pipe.process(frame(), 0.0)
    assert not first.person_found and first.presence == pytest.approx(0.3)
    model.presence = 0.6
    assert pipe.process(frame(), 1 / 30).person_found
    model.presence = 0.3  # tracked: kept while at least presence_min
    kept = pipe.process(frame(), 2 / 30)
    assert kept.person_found and kept.roi_reason == "track"
    model.presence = 0.1  # lost; from now on it takes 0.5 again
    assert not pipe.process(frame(), 3 / 30).person_found
    model.presence = 0.3
    assert not pipe.process(frame(), 4 / 30).person_found
    # The settings override the model; without any acquire value there is no hysteresis.
    pipe = Pipeline(model, NO_FACE_DETECTOR.with_overrides(scores={"presence_acquire_min": 0.25}))
    assert pipe.process(frame(), 0.0).person_found
    model.info.presence_acquire_threshold = None
    assert Pipeline(model, NO_FACE_DETECTOR).presence_acquire_min == 0.2
    with pytest.raises(ValueError, match="must be at least the presence that keeps"):
        Pipeline(model, NO_FACE_DETECTOR.with_overrides(scores={"presence_acquire_min": 0.1}))

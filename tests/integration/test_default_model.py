"""The shipped default model (rehab/models/default.onnx) through the public API, on real images.

A floor on 50 LSP test images that a broken model cannot reach, checked against two broken versions of the
same predictions (left and right swapped, joints of one image given to the next) so the floor is known to
separate them; and predictions on a real video frame that land on the person.
"""

from __future__ import annotations

import numpy as np
import pytest

import rehab
from rehab.core.metrics import lsp_torso_size, pck
from rehab.core.skeleton import LSP14
from rehab.pose_annotations import read_lsp
from rehab.runtime.video import read_frames

# 50 of LSP test's 1000 images, spread evenly (im1001, im1021, ...).
N_IMAGES, STEP = 50, 20
# The shipped model measures 70-80 PCK@0.2 on these 50 images (its full-test figure is in its metadata and
# MODEL_CARD.md); each broken variant below scores under 45.
FLOOR_PCK = 60.0
BROKEN_CEILING = 45.0
LIMBS12 = [j for j in LSP14.joints if j not in ("neck", "head_top")]


@pytest.fixture(scope="module")
def model():
    return rehab.PoseModel.load()


@pytest.fixture(scope="module")
def predictions(model, shared_dir, require_data):
    import cv2

    records = read_lsp(require_data(shared_dir / "data" / "lsp"), split="test")[::STEP][:N_IMAGES]
    assert len(records) == N_IMAGES
    pred, gt, vis = [], [], []
    for rec in records:
        pose = model.predict(cv2.imread(str(rec.image_path)))
        pred.append(np.stack([pose.keypoints_px[pose.index(j)] for j in LSP14.joints]))
        gt.append(rec.joints_px)
        vis.append(rec.annotated)
    return np.array(pred), np.array(gt), np.array(vis)


def _limb_pck(pred: np.ndarray, gt: np.ndarray, vis: np.ndarray) -> float:
    idx = [LSP14.joints.index(j) for j in LIMBS12]
    torso = lsp_torso_size(gt, LSP14.joints.index("left_shoulder"), LSP14.joints.index("right_hip"))
    return float(pck(pred[:, idx], gt[:, idx], vis[:, idx], torso, alpha=0.2).mean)


def test_default_model_loads_with_no_argument_and_describes_itself(model):
    info = model.info
    assert model.path.name == "default.onnx" and model.path.parent.name == "models"
    assert set(LSP14.joints) <= set(info.joint_names)
    assert info.input_size[0] >= 128 and info.heatmap_size[0] * 4 == info.input_size[0]
    assert any("pck" in k.lower() for k in info.metrics), info.metrics


def test_pck_on_50_lsp_test_images_is_above_a_floor_broken_models_do_not_reach(predictions, record_property):
    pred, gt, vis = predictions
    ours = _limb_pck(pred, gt, vis)
    swapped = _limb_pck(pred[:, [LSP14.joints.index(j) for j in _mirror_names(LSP14.joints)]], gt, vis)
    shifted = _limb_pck(np.roll(pred, 1, axis=0), gt, vis)
    record_property("pck_50", round(ours, 1))
    record_property("pck_50_left_right_swapped", round(swapped, 1))
    record_property("pck_50_other_image", round(shifted, 1))
    assert swapped < BROKEN_CEILING and shifted < BROKEN_CEILING, (swapped, shifted)
    assert ours >= FLOOR_PCK, f"PCK@0.2 {ours:.1f} on {N_IMAGES} LSP test images (floor {FLOOR_PCK})"


def _mirror_names(names: list[str]) -> list[str]:
    swap = {"left_": "right_", "right_": "left_"}
    out = []
    for n in names:
        for a, b in swap.items():
            if n.startswith(a):
                n = b + n[len(a):]
                break
        out.append(n)
    return out


# The person's box in the first frame of pose2sim_balancing_cam01.mp4 (1080x1920), read off the frame by eye
# with a generous margin: the patient stands on the force plate, head near y=330, feet near y=1170.
PERSON_BOX_CAM01 = (180.0, 250.0, 680.0, 1260.0)


def test_predictions_on_a_real_video_frame_land_on_the_person(model, shared_dir, require_data):
    """Given the person's box (as the pipeline's tracker gives it), the joints stack head over hips over knees
    over ankles, lie inside the box and span most of the person's height."""
    path = require_data(shared_dir / "videos" / "pose2sim_balancing_cam01.mp4")
    frame, _ = next(iter(read_frames(path, max_frames=1)))
    assert frame.shape[:2] == (1920, 1080)
    pose = model.predict(frame, bbox_xyxy=PERSON_BOX_CAM01)
    y = {j: pose.keypoints_px[pose.index(j), 1] for j in ("head_top", "neck", "left_hip", "right_hip",
                                                           "left_knee", "right_knee", "left_ankle", "right_ankle")}
    assert y["head_top"] < y["neck"] < min(y["left_hip"], y["right_hip"]), y
    assert max(y["left_hip"], y["right_hip"]) < min(y["left_knee"], y["right_knee"]), y
    assert max(y["left_knee"], y["right_knee"]) < min(y["left_ankle"], y["right_ankle"]), y
    x1, y1, x2, y2 = PERSON_BOX_CAM01
    kp = pose.keypoints_px
    assert ((kp[:, 0] >= x1) & (kp[:, 0] <= x2) & (kp[:, 1] >= y1) & (kp[:, 1] <= y2)).all(), kp
    assert max(y["left_ankle"], y["right_ankle"]) - y["head_top"] > 0.6 * (y2 - y1), y


# Rows of pose2sim_balancing_cam01 (1080x1920) that nobody enters in its 100 frames, labelled by hand with the
# frame-to-median difference over all frames (see export/presence_eval.py); the clip has no empty-room frame (the
# person is in all 100). The ceiling with its motion-capture cameras is below the keep threshold. The force plate
# below the feet (never below y=1543) is held out of training and scores a median 0.021 in the model card, at the
# keep threshold (0.02): a tracked person's crop may slide there, but it is far under the acquire threshold, so it
# never starts a track.
CAM01_EMPTY_ROWS = {(0, 300): "keep", (1620, 1920): "acquire"}
LSP_PERSON_CROPS = 10


def _cam01_frames(shared_dir, require_data, which: tuple[int, ...]) -> dict[int, np.ndarray]:
    path = require_data(shared_dir / "videos" / "pose2sim_balancing_cam01.mp4")
    return {i: frame for i, (frame, _) in enumerate(read_frames(path)) if i in which}


def test_default_model_has_a_presence_output_with_a_threshold(model):
    assert model.info.has_presence and model.info.presence_output == "presence"
    assert 0.0 < model.info.presence_threshold < 1.0
    pose = model.predict(np.zeros((64, 64, 3), np.uint8))
    assert pose.presence is not None and 0.0 <= pose.presence <= 1.0


def test_presence_is_below_the_threshold_on_black_white_and_noise_frames(model):
    threshold = model.info.presence_threshold
    rng = np.random.default_rng(0)
    frames = {"black": np.zeros((720, 1280, 3), np.uint8), "white": np.full((720, 1280, 3), 255, np.uint8),
              "static noise": rng.integers(0, 256, size=(720, 1280, 3), dtype=np.uint8)}
    for name, frame in frames.items():
        for presence in (model.predict(frame).presence, model.predict(frame, flip_test=True).presence):
            assert presence < threshold, f"{name}: presence {presence:.3f} >= threshold {threshold}"


def test_presence_is_above_the_threshold_on_real_people(model, shared_dir, require_data):
    import cv2

    from rehab.core.transforms import keypoints_box

    threshold = model.info.presence_threshold
    records = read_lsp(require_data(shared_dir / "data" / "lsp"), split="test")[::100][:LSP_PERSON_CROPS]
    images = [cv2.imread(str(r.image_path)) for r in records]
    boxes = [keypoints_box(r.joints_px, r.annotated) for r in records]
    crops = [p.presence for p in model.predict_batch(images, boxes)]
    assert crops[0] >= threshold, crops  # im1001, the person's box as the tracker gives it
    assert sum(p >= threshold for p in crops) >= LSP_PERSON_CROPS - 1, crops
    frames = _cam01_frames(shared_dir, require_data, (0, 50, 99))
    for i, frame in frames.items():
        whole = model.predict(frame).presence  # the whole held-out frame, as the tracker's first search sees it
        boxed = model.predict(frame, bbox_xyxy=PERSON_BOX_CAM01).presence
        assert whole >= threshold and boxed >= threshold, (i, whole, boxed)


def test_presence_is_below_the_threshold_where_nobody_is_in_a_real_frame(model, shared_dir, require_data):
    thresholds = {"keep": model.info.presence_threshold, "acquire": model.info.presence_acquire_threshold}
    assert thresholds["acquire"] is not None and thresholds["acquire"] > thresholds["keep"]
    frames = _cam01_frames(shared_dir, require_data, (0, 99))
    for i, frame in frames.items():
        for (y1, y2), which in CAM01_EMPTY_ROWS.items():
            presence = model.predict(np.ascontiguousarray(frame[y1:y2])).presence
            assert presence < thresholds[which], (i, (y1, y2), which, presence)

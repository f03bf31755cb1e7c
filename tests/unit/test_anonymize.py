"""Anonymisation: head boxes from hand-built poses, the CenterFace detector and its carried boxes, fail-closed
fallbacks (missing or corrupt model too), and an independent face check (Haar cascades the anonymiser does not use)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from rehab.core.skeleton import LSP14, MPII16
from rehab.runtime.anonymize import Anonymizer, FaceTracker, clip_box, locate_head, pixelate
from rehab.runtime.centerface import FETCH_COMMAND, MODEL_ENV, FaceDetections, decode, nms
from rehab.settings import AnonymizeSettings

# Hand-placed LSP joints on astronaut.png (512x512): the head top on the hair, the neck under the chin,
# the shoulders on the suit's seams. Hips and legs are below the picture.
ASTRONAUT_JOINTS = {
    "head_top": (224, 18), "neck": (222, 180),
    "right_shoulder": (110, 255), "left_shoulder": (335, 255),
    "right_elbow": (60, 420), "left_elbow": (360, 420),
}
POSE_ONLY = AnonymizeSettings(face_detector=False)


def lsp_pose(joints: dict[str, tuple[float, float]], score: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    kp = np.zeros((LSP14.num_joints, 2))
    scores = np.zeros(LSP14.num_joints, dtype=np.float32)
    for name, xy in joints.items():
        kp[LSP14.index(name)] = xy
        scores[LSP14.index(name)] = score
    return kp, scores


def face_detectors():
    """Two of OpenCV's cascades, neither of which is the one the anonymiser itself uses."""
    if not getattr(getattr(cv2, "data", None), "haarcascades", None):
        pytest.fail(f"OpenCV {cv2.__version__} ships no Haar cascades: install opencv-python-headless<5 "
                    "(pyproject pins it) for the independent face check")
    return [cv2.CascadeClassifier(cv2.data.haarcascades + name)
            for name in ("haarcascade_frontalface_alt2.xml", "haarcascade_frontalface_alt.xml")]


def find_faces(image: np.ndarray) -> list[tuple[int, int, int, int]]:
    grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
    return [(int(x), int(y), int(x + w), int(y + h)) for d in face_detectors()
            for x, y, w, h in np.asarray(d.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=3,
                                                              minSize=(24, 24))).reshape(-1, 4)]


def overlaps(a, b) -> bool:
    """Boxes overlap by more than a third of the smaller one (the same face found again)."""
    ix = max(min(a[2], b[2]) - max(a[0], b[0]), 0)
    iy = max(min(a[3], b[3]) - max(a[1], b[1]), 0)
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy > smaller / 3


def faces_still_found(raw: np.ndarray, out: np.ndarray) -> int:
    """Faces the detectors find on ``raw`` that they find again at the same place on ``out``."""
    after = find_faces(out)
    return sum(any(overlaps(f, g) for g in after) for f in find_faces(raw))


@pytest.fixture(scope="module")
def astronaut(shared_dir, require_data) -> np.ndarray:
    image = cv2.imread(str(require_data(shared_dir / "images/astronaut.png")))
    assert image is not None and len(find_faces(image)) >= 1  # the check below would be empty otherwise
    return image


def face_region(image: np.ndarray) -> tuple[int, int, int, int]:
    grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
    x, y, w, h = face_detectors()[0].detectMultiScale(grey, 1.1, 3, minSize=(24, 24))[0]
    return int(x), int(y), int(x + w), int(y + h)


def detail(image: np.ndarray, box) -> float:
    """Variance of the Laplacian inside a box: high for a sharp face, near zero once blurred."""
    x1, y1, x2, y2 = box
    return float(cv2.Laplacian(cv2.cvtColor(image[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())


def test_head_box_from_head_joints_hides_the_face(astronaut):
    before = astronaut.copy()
    kp, scores = lsp_pose(ASTRONAUT_JOINTS)
    result = Anonymizer(LSP14.joints, POSE_ONLY)(astronaut, kp, scores)
    assert np.array_equal(astronaut, before), "the input frame must not be modified"
    assert result.sources == ("head",) and not result.whole_frame
    face = face_region(astronaut)
    x1, y1, x2, y2 = result.boxes_xyxy[0]
    assert x1 <= face[0] and y1 <= face[1] and x2 >= face[2] and y2 >= face[3]
    assert faces_still_found(astronaut, result.frame_bgr) == 0
    assert detail(result.frame_bgr, face) < 0.05 * detail(astronaut, face)
    # Far from the head the picture is untouched.
    assert np.array_equal(result.frame_bgr[450:, 380:], astronaut[450:, 380:])


def test_shoulders_stand_in_when_the_head_is_unreliable(astronaut):
    joints = {k: v for k, v in ASTRONAUT_JOINTS.items() if k not in ("head_top", "neck")}
    kp, scores = lsp_pose(joints)
    kp[LSP14.index("head_top")] = (400, 400)  # a confident-looking but low-scored wrong head
    result = Anonymizer(LSP14.joints, POSE_ONLY)(astronaut, kp, scores)
    assert result.sources == ("shoulders",)
    assert faces_still_found(astronaut, result.frame_bgr) == 0


@pytest.mark.parametrize("case", ["no pose", "all low scores", "legs only", "nan keypoints", "bad shape"])
def test_fails_closed_to_the_whole_frame(astronaut, case):
    kp, scores = lsp_pose(ASTRONAUT_JOINTS)
    if case == "no pose":
        kp = scores = None
    elif case == "all low scores":
        scores = np.full_like(scores, 0.1)
    elif case == "legs only":
        kp, scores = lsp_pose({"left_knee": (300, 480), "right_knee": (200, 480), "left_hip": (300, 400)})
    elif case == "nan keypoints":
        kp = np.full_like(kp, np.nan)
    elif case == "bad shape":
        kp = kp[:5]  # an internal error must still blur
    result = Anonymizer(LSP14.joints, POSE_ONLY)(astronaut, kp, scores)
    assert result.whole_frame
    assert result.boxes_xyxy == ((0, 0, 512, 512),)
    assert faces_still_found(astronaut, result.frame_bgr) == 0
    assert detail(result.frame_bgr, (0, 0, 512, 512)) < 0.05 * detail(astronaut, (0, 0, 512, 512))


def test_off_means_off(astronaut):
    kp, scores = lsp_pose(ASTRONAUT_JOINTS)
    result = Anonymizer(LSP14.joints, AnonymizeSettings(enabled=False))(astronaut, kp, scores)
    assert np.array_equal(result.frame_bgr, astronaut) and not result.boxes_xyxy


def test_mpii_joint_set_and_head_size():
    kp = np.full((MPII16.num_joints, 2), np.nan)
    reliable = np.zeros(MPII16.num_joints, dtype=bool)
    for name, xy in {"head_top": (100, 50), "neck": (100, 90), "left_shoulder": (130, 110), "right_shoulder": (70, 110)}.items():
        kp[MPII16.index(name)] = xy
        reliable[MPII16.index(name)] = True
    head = locate_head(kp, reliable, MPII16.joints, AnonymizeSettings())
    x1, y1, x2, y2 = head.box_xyxy
    assert (x1 + x2) / 2 == pytest.approx(100) and (y1 + y2) / 2 == pytest.approx(70)
    # 2.5 x the 40 px head length = 100 px, but never under 1.6 x the 60 px shoulder width = 96 px.
    assert x2 - x1 == pytest.approx(100.0)
    narrow = AnonymizeSettings(head_box_per_head_length=1.0)
    head = locate_head(kp, reliable, MPII16.joints, narrow)
    assert head.box_xyxy[2] - head.box_xyxy[0] == pytest.approx(96.0)
    reliable[MPII16.index("neck")] = False
    head = locate_head(kp, reliable, MPII16.joints, AnonymizeSettings())
    assert head.source == "shoulders" and head.box_xyxy[2] - head.box_xyxy[0] == pytest.approx(180.0)


def test_side_view_uses_the_torso_when_shoulders_overlap():
    kp, scores = lsp_pose({"neck": (100, 100), "right_shoulder": (100, 120), "left_shoulder": (102, 121),
                           "right_hip": (100, 320)})
    head = locate_head(kp, scores > 0.5, LSP14.joints, AnonymizeSettings())
    # Torso 200 px -> body scale 100 px -> a 300 px box around the neck.
    assert head.source == "shoulders" and head.box_xyxy[2] - head.box_xyxy[0] == pytest.approx(300.0, rel=0.02)


def test_box_helpers():
    assert clip_box((-10.5, 5.2, 30.1, 700), (100, 200)) == (0, 5, 31, 200)
    assert clip_box((150, 0, 160, 10), (100, 200)) is None
    assert clip_box((np.nan, 0, 10, 10), (100, 200)) is None
    region = np.random.default_rng(0).integers(0, 255, (90, 60, 3), dtype=np.uint8)
    out = pixelate(region, blocks=3)
    assert out.shape == region.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - region.mean(axis=(0, 1))).mean() < np.abs(region.astype(int) - region.mean(axis=(0, 1))).mean() / 3


def test_head_contradicting_the_torso_is_not_trusted():
    # A rough model's classic miss: head_top and neck placed on the hips, while the torso stands upright.
    upright = {"left_shoulder": (120, 100), "right_shoulder": (80, 100), "left_hip": (115, 220), "right_hip": (85, 220)}
    kp, scores = lsp_pose({**upright, "neck": (100, 225), "head_top": (100, 260)})
    assert locate_head(kp, scores > 0.5, LSP14.joints, AnonymizeSettings()) is None
    # The same head upside down relative to the torso, at the right place: also refused.
    kp, scores = lsp_pose({**upright, "neck": (100, 90), "head_top": (100, 140)})
    assert locate_head(kp, scores > 0.5, LSP14.joints, AnonymizeSettings()) is None
    # Lying down (torso horizontal), head beyond the shoulders along the body: trusted.
    lying = {"left_shoulder": (100, 220), "right_shoulder": (100, 180), "left_hip": (220, 215), "right_hip": (220, 185),
             "neck": (90, 200), "head_top": (40, 200)}
    kp, scores = lsp_pose(lying)
    assert locate_head(kp, scores > 0.5, LSP14.joints, AnonymizeSettings()).source == "head"


def test_recent_head_boxes_are_blurred_too(astronaut):
    anonymizer = Anonymizer(LSP14.joints, AnonymizeSettings(face_detector=False, head_box_memory_frames=3))
    kp, scores = lsp_pose(ASTRONAUT_JOINTS)
    anonymizer(astronaut, kp, scores)
    # Next frame the pose misplaces the head to the lower right: the face is still covered from memory.
    wrong, wrong_scores = lsp_pose({"head_top": (440, 330), "neck": (440, 400), "right_shoulder": (400, 430),
                                    "left_shoulder": (480, 430)})
    result = anonymizer(astronaut, wrong, wrong_scores)
    assert len(result.boxes_xyxy) == 2
    assert faces_still_found(astronaut, result.frame_bgr) == 0
    for _ in range(3):
        result = anonymizer(astronaut, wrong, wrong_scores)
    assert len(result.boxes_xyxy) == 1 and faces_still_found(astronaut, result.frame_bgr) >= 1  # memory expired


# A pose that puts the head at the lower right of astronaut.png, far from the real face (a wrong pose).
WRONG_HEAD = {"head_top": (440, 300), "neck": (440, 380), "right_shoulder": (400, 420), "left_shoulder": (480, 420)}


def test_detector_blurs_a_face_the_pose_missed(astronaut, face_model):
    kp, scores = lsp_pose(WRONG_HEAD)
    anonymizer = Anonymizer(LSP14.joints, AnonymizeSettings())
    assert anonymizer.has_face_detector and not anonymizer.detector_error
    result = anonymizer(astronaut, kp, scores)
    assert "detector" in result.sources and "head" in result.sources and not result.whole_frame
    face = face_region(astronaut)
    box = result.boxes_xyxy[result.sources.index("detector")]
    assert box[0] <= face[0] and box[1] <= face[1] and box[2] >= face[2] and box[3] >= face[3]
    assert faces_still_found(astronaut, result.frame_bgr) == 0


@pytest.mark.parametrize("problem", ["missing", "corrupt"])
def test_missing_or_corrupt_model_fails_closed(astronaut, face_model, tmp_path, monkeypatch, caplog, problem):
    path = tmp_path / "centerface.onnx"
    if problem == "corrupt":
        path.write_bytes(face_model.read_bytes()[:100_000])  # a truncated copy
    monkeypatch.setenv(MODEL_ENV, str(path))
    anonymizer = Anonymizer(LSP14.joints, AnonymizeSettings())
    assert FETCH_COMMAND in anonymizer.detector_error
    assert ("not found" if problem == "missing" else "corrupt") in anonymizer.detector_error
    assert FETCH_COMMAND in caplog.text
    kp, scores = lsp_pose(ASTRONAUT_JOINTS)  # even with a well-located head: nobody else's face is known
    for _ in range(2):
        result = anonymizer(astronaut, kp, scores)
        assert result.whole_frame and result.reason == "face detector unavailable"
    assert faces_still_found(astronaut, result.frame_bgr) == 0


def test_background_detector_fails_closed_until_its_boxes_arrive(astronaut, face_model):
    import time

    kp, scores = lsp_pose(WRONG_HEAD)
    anonymizer = Anonymizer(LSP14.joints, AnonymizeSettings(face_detector_background=True,
                                                             face_detector_max_age_frames=1000))
    first = anonymizer(astronaut, kp, scores)
    assert first.whole_frame and first.reason == "waiting for the face detector"
    deadline = time.monotonic() + 30
    while not anonymizer._pending.done() and time.monotonic() < deadline:
        time.sleep(0.01)
    later = [anonymizer(astronaut, kp, scores) for _ in range(3)]
    assert all("detector" in r.sources and not r.whole_frame for r in later)
    assert faces_still_found(astronaut, later[-1].frame_bgr) == 0
    anonymizer.close()


def test_background_detector_too_far_behind_blurs_the_whole_frame(astronaut, face_model):
    import time

    kp, scores = lsp_pose(ASTRONAUT_JOINTS)
    settings = AnonymizeSettings(face_detector_background=True, face_detector_max_age_frames=2,
                                 face_detector_background_every_frames=1000)
    anonymizer = Anonymizer(LSP14.joints, settings)
    anonymizer(astronaut, kp, scores)
    while not anonymizer._pending.done():
        time.sleep(0.01)
    results = [anonymizer(astronaut, kp, scores) for _ in range(5)]
    assert not results[0].whole_frame  # the result of frame 0, one frame old
    assert results[-1].whole_frame and "behind" in results[-1].reason
    anonymizer.close()


def detections(*boxes, score: float = 0.9) -> FaceDetections:
    return FaceDetections(np.array(boxes, np.float32).reshape(-1, 4), np.full(len(boxes), score, np.float32))


def test_carried_face_boxes_are_held_moved_and_grown():
    s = AnonymizeSettings(face_hold_frames=3, face_hold_runs=1, face_growth_per_frame=0.1, face_max_growth=0.5,
                          face_detector_margin=0.0)
    tracker = FaceTracker(s)
    tracker.update(detections((100, 100, 120, 120)), frame=0)
    assert tracker.boxes_at(0) == [(100.0, 100.0, 120.0, 120.0)]
    tracker.update(detections((110, 100, 130, 120)), frame=2)  # moving right at 5 px per frame
    assert len(tracker.tracks) == 1 and tracker.tracks[0].velocity_px.tolist() == [5.0, 0.0]
    # Two frames later (no detector run): moved 10 px, grown 0.2 x 20 px per side, the last box still inside.
    assert tracker.boxes_at(4) == [pytest.approx((106.0, 96.0, 144.0, 124.0))]
    # Growth stops at face_max_growth (0.5 x 20 px per side).
    x1, y1, x2, y2 = tracker.boxes_at(30)[0]
    assert y1 == pytest.approx(90.0) and y2 == pytest.approx(130.0)
    # The detector blinks: the box is held for face_hold_frames after it was last seen, then dropped.
    for frame in (3, 4, 5):
        tracker.update(detections(), frame=frame)
        assert len(tracker.tracks) == 1
    tracker.update(detections(), frame=6)
    assert tracker.tracks == []
    # Unrelated detections start tracks of their own.
    tracker.update(detections((0, 0, 10, 10), (300, 300, 330, 330)), frame=7)
    assert len(tracker.boxes_at(7)) == 2


def test_centerface_decode_and_nms():
    heat = np.zeros((1, 1, 20, 30), np.float32)
    heat[0, 0, 5, 10] = 0.9
    heat[0, 0, 5, 11] = 0.6  # the same face one cell over: suppressed
    heat[0, 0, 15, 25] = 0.4
    log_scale = np.full((1, 2, 20, 30), np.log(32 / 4), np.float32)  # exp(scale) x the 4 px stride = 32 px
    offset = np.zeros((1, 2, 20, 30), np.float32)
    found = decode(heat, log_scale, offset, threshold=0.3)
    assert found.scores.tolist() == pytest.approx([0.9, 0.4])
    # Centre of cell (5, 10) at stride 4: x = 10.5 * 4 = 42, y = 5.5 * 4 = 22; 32 x 32 px.
    assert found.boxes_xyxy[0].tolist() == pytest.approx([26.0, 6.0, 58.0, 38.0])
    assert len(decode(heat, log_scale, offset, threshold=0.95)) == 0
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float64)
    assert nms(boxes, np.array([0.5, 0.9, 0.7]), 0.3).tolist() == [1, 2]

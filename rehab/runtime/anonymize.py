"""Face anonymisation that fails closed.

The face region comes from the pose's head joints (LSP and MPII have head_top and neck, no eyes or nose),
sized from the head segment or, failing that, from the shoulders or the torso, and generously padded.
An OpenCV Haar face detector adds its boxes where the installed OpenCV ships the cascade files (opencv-python
4.x does, 5.x does not). When the head cannot be located at all the whole frame is blurred: an unblurred face
is the one outcome this module must not produce.

The blur averages the box down to a few blocks across and enlarges that smoothly again; about three blocks
across a face leave nothing a person or a face detector could recognise.
"""

from __future__ import annotations

import logging
import math
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np

from rehab.runtime.smoothing import reliable_mask
from rehab.settings import AnonymizeSettings

logger = logging.getLogger(__name__)

# A head segment shorter than this (in pixels) with no body scale to check it against is a degenerate
# prediction, not a located head.
MIN_HEAD_LENGTH_PX = 3.0
# A head whose joints contradict the torso of the same pose is a misplaced prediction (e.g. a rough model
# putting head_top and neck on the hips), and trusting it would leave the real face unblurred. Measured along
# the body, so it holds for lying as for standing people: the neck lies near the shoulders, the head points
# away from the hips, and it is shorter than the torso.
MAX_HEAD_TORSO_ANGLE_DEG = 75.0
MAX_NECK_TO_SHOULDERS_PER_TORSO = 0.6
HEAD_PER_TORSO_RANGE = (0.08, 1.0)
# Head centre to shoulder midpoint is about half a torso (shoulder-to-hip) length; the torso stands in for
# the shoulder width when the person is seen from the side and the shoulders overlap.
TORSO_TO_BODY_SCALE = 0.5

# Haar detector parameters: OpenCV's usual values; a face smaller than this is too small to recognise.
HAAR_SCALE_FACTOR = 1.1
HAAR_MIN_NEIGHBORS = 4
HAAR_MIN_FACE_PX = 20
HAAR_CASCADE = "haarcascade_frontalface_default.xml"

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class HeadLocation:
    """A square face box in image pixels and how it was found ("head", "shoulders")."""

    box_xyxy: tuple[float, float, float, float]
    source: str


@dataclass(frozen=True)
class AnonymizedFrame:
    frame_bgr: np.ndarray
    # Boxes that were blurred (clipped to the frame), and the method per box.
    boxes_xyxy: tuple[Box, ...] = ()
    sources: tuple[str, ...] = ()
    whole_frame: bool = False
    reason: str = ""


def _square(center, side: float) -> tuple[float, float, float, float]:
    half = side / 2.0
    return (float(center[0] - half), float(center[1] - half), float(center[0] + half), float(center[1] + half))


def locate_head(keypoints_px: np.ndarray, reliable: np.ndarray, joint_names, settings: AnonymizeSettings) -> HeadLocation | None:
    """The face box from the confident joints, or None when the head cannot be located."""
    names = tuple(joint_names)
    kp = np.asarray(keypoints_px, dtype=np.float64)

    def point(name: str) -> np.ndarray | None:
        if name in names and reliable[names.index(name)]:
            return kp[names.index(name)]
        return None

    head_top, neck = point("head_top"), point("neck")
    shoulders = [p for p in (point("left_shoulder"), point("right_shoulder")) if p is not None]
    hips = [p for p in (point("left_hip"), point("right_hip")) if p is not None]
    doubt = implausible_head(head_top, neck, shoulders, hips)
    if doubt:
        logger.debug("head not trusted: %s", doubt)
        return None

    # Body scale: the shoulder width, or half the torso when the shoulders overlap in a side view.
    scales = []
    if len(shoulders) == 2:
        scales.append(float(np.linalg.norm(shoulders[0] - shoulders[1])))
    if shoulders and hips:
        torso = float(np.linalg.norm(np.mean(shoulders, axis=0) - np.mean(hips, axis=0)))
        scales.append(TORSO_TO_BODY_SCALE * torso)
    body_scale = max(scales) if scales else None

    if head_top is not None and neck is not None:
        head_len = float(np.linalg.norm(head_top - neck))
        side = head_len * settings.head_box_per_head_length
        if body_scale is not None:
            side = max(side, body_scale * settings.min_head_box_per_shoulder_width)
        if head_len >= MIN_HEAD_LENGTH_PX or body_scale is not None:
            return HeadLocation(_square((head_top + neck) / 2.0, side), "head")

    anchor = neck if neck is not None else head_top if head_top is not None else (
        np.mean(shoulders, axis=0) if shoulders else None)
    if anchor is not None and body_scale is not None and body_scale > 0:
        return HeadLocation(_square(anchor, body_scale * settings.head_box_per_shoulder_width), "shoulders")
    return None


def implausible_head(head_top, neck, shoulders: list, hips: list) -> str:
    """Why the head joints contradict the torso of the same pose ("" when they do not, or cannot be checked)."""
    if not shoulders or not hips:
        return ""
    mid_shoulder, mid_hip = np.mean(shoulders, axis=0), np.mean(hips, axis=0)
    torso = mid_shoulder - mid_hip
    torso_len = float(np.linalg.norm(torso))
    if torso_len <= 0:
        return "shoulders and hips coincide"
    if neck is not None and np.linalg.norm(neck - mid_shoulder) > MAX_NECK_TO_SHOULDERS_PER_TORSO * torso_len:
        return "neck far from the shoulders"
    if head_top is not None and neck is not None:
        head = head_top - neck
        head_len = float(np.linalg.norm(head))
        lo, hi = HEAD_PER_TORSO_RANGE
        if not lo * torso_len <= head_len <= hi * torso_len:
            return f"head length {head_len / torso_len:.2f} x the torso"
        cos = float(head @ torso) / (head_len * torso_len)
        if cos < math.cos(math.radians(MAX_HEAD_TORSO_ANGLE_DEG)):
            return f"head points {math.degrees(math.acos(max(-1.0, min(1.0, cos)))):.0f} deg away from the torso"
    return ""


def clip_box(box_xyxy, frame_size) -> Box | None:
    """Integer box clipped to a (w, h) frame, grown outward to whole pixels; None when nothing is left."""
    w, h = frame_size
    x1, y1, x2, y2 = box_xyxy
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return None
    box = (max(int(math.floor(x1)), 0), max(int(math.floor(y1)), 0),
           min(int(math.ceil(x2)), w), min(int(math.ceil(y2)), h))
    if box[2] <= box[0] or box[3] <= box[1]:
        return None
    return box


def pad_box(box_xyxy, margin: float) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    dx, dy = (x2 - x1) * margin, (y2 - y1) * margin
    return (x1 - dx, y1 - dy, x2 + dx, y2 + dy)


def pixelate(region_bgr: np.ndarray, blocks: int) -> np.ndarray:
    """Reduce to ``blocks`` blocks across the longer side, then scale back up smoothly.

    The reduction (area averaging) is what removes the face: a few samples across it keep no feature. The
    bilinear enlargement hides the block edges, which carry no face detail but let the eye fill in a face
    from a sharp mosaic; it costs one resize where a Gaussian as wide as a block would cost far more.
    """
    h, w = region_bgr.shape[:2]
    block_px = max(max(h, w) / float(blocks), 1.0)
    small_w, small_h = max(int(round(w / block_px)), 1), max(int(round(h / block_px)), 1)
    small = cv2.resize(region_bgr, (small_w, small_h), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def blur_box(frame_bgr: np.ndarray, box: Box, blocks: int) -> None:
    """Anonymise one box of ``frame_bgr`` in place."""
    x1, y1, x2, y2 = box
    frame_bgr[y1:y2, x1:x2] = pixelate(frame_bgr[y1:y2, x1:x2], blocks)


def haar_cascade_path() -> str | None:
    """Path of OpenCV's frontal-face cascade, or None when this OpenCV build ships no cascades (5.x)."""
    data = getattr(cv2, "data", None)
    directory = getattr(data, "haarcascades", None) if data is not None else None
    if not directory:
        return None
    path = os.path.join(directory, HAAR_CASCADE)
    return path if os.path.isfile(path) else None


class HaarFaceDetector:
    """OpenCV's Haar frontal-face detector on a downscaled grey copy of the frame."""

    def __init__(self, max_side_px: int = 960, cascade_path: str | None = None) -> None:
        path = cascade_path or haar_cascade_path()
        if path is None:
            raise FileNotFoundError(f"OpenCV {cv2.__version__} ships no Haar cascade {HAAR_CASCADE!r} "
                                    "(cv2.data.haarcascades is missing; opencv-python-headless<5 has it)")
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise ValueError(f"could not load the Haar cascade {path}")
        self.max_side_px = int(max_side_px)

    @classmethod
    def available(cls) -> bool:
        return haar_cascade_path() is not None

    def detect(self, frame_bgr: np.ndarray) -> list[tuple[float, float, float, float]]:
        h, w = frame_bgr.shape[:2]
        scale = min(1.0, self.max_side_px / float(max(h, w)))
        grey = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
        if scale < 1.0:
            grey = cv2.resize(grey, (max(int(w * scale), 1), max(int(h * scale), 1)), interpolation=cv2.INTER_AREA)
        grey = cv2.equalizeHist(grey)
        found = self._cascade.detectMultiScale(grey, scaleFactor=HAAR_SCALE_FACTOR, minNeighbors=HAAR_MIN_NEIGHBORS,
                                               minSize=(HAAR_MIN_FACE_PX, HAAR_MIN_FACE_PX))
        return [(x / scale, y / scale, (x + fw) / scale, (y + fh) / scale) for x, y, fw, fh in np.asarray(found).reshape(-1, 4)]


@dataclass
class Anonymizer:
    """Blurs faces in each frame; stateful only for the detector's cadence and its last boxes."""

    joint_names: tuple[str, ...]
    settings: AnonymizeSettings = field(default_factory=AnonymizeSettings)
    min_score: float = 0.3

    def __post_init__(self) -> None:
        self.joint_names = tuple(self.joint_names)
        self._detector: HaarFaceDetector | None = None
        if self.settings.enabled and self.settings.face_detector:
            if HaarFaceDetector.available():
                self._detector = HaarFaceDetector(self.settings.face_detector_max_side_px)
            else:
                logger.info("no Haar cascades in OpenCV %s: faces are located from the pose only", cv2.__version__)
        self._frames = 0
        self._detected: list[tuple[float, float, float, float]] = []
        self._executor: ThreadPoolExecutor | None = None
        self._pending: Future | None = None
        self._recent_heads: deque = deque(maxlen=self.settings.head_box_memory_frames)

    @property
    def has_face_detector(self) -> bool:
        return self._detector is not None

    def reset(self) -> None:
        self._frames = 0
        self._detected = []
        self._pending = None
        self._recent_heads.clear()

    def _update_detections(self, frame_bgr: np.ndarray) -> None:
        """Refresh the detector's boxes every N frames (on the unblurred frame); they hold in between."""
        s = self.settings
        due = self._frames % s.face_detector_every_frames == 0
        if not s.face_detector_background:
            if due:
                self._detected = [pad_box(b, s.face_detector_margin) for b in self._detector.detect(frame_bgr)]
            return
        if self._pending is not None and self._pending.done():
            found, self._pending = self._pending.result(), None
            self._detected = [pad_box(b, s.face_detector_margin) for b in found]
        if due and self._pending is None:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="face-detector")
            # OpenCV releases the GIL while detecting, so the worker runs beside the pose model.
            self._pending = self._executor.submit(self._detector.detect, frame_bgr.copy())

    def __call__(self, frame_bgr: np.ndarray, keypoints_px: np.ndarray | None, scores: np.ndarray | None) -> AnonymizedFrame:
        """An anonymised copy of ``frame_bgr`` (the input is not modified)."""
        out = frame_bgr.copy()
        if not self.settings.enabled:
            return AnonymizedFrame(out, reason="anonymisation off by the user's settings")
        try:
            return self._anonymize(out, keypoints_px, scores)
        except Exception:  # noqa: BLE001 - failing closed: any error blurs the whole frame
            logger.exception("anonymisation failed; blurring the whole frame")
            return self._whole_frame(frame_bgr.copy(), "anonymisation error")

    def _whole_frame(self, out: np.ndarray, reason: str) -> AnonymizedFrame:
        h, w = out.shape[:2]
        out[:] = pixelate(out, self.settings.blocks_across_frame)
        return AnonymizedFrame(out, ((0, 0, w, h),), ("frame",), whole_frame=True, reason=reason)

    def _anonymize(self, out: np.ndarray, keypoints_px, scores) -> AnonymizedFrame:
        h, w = out.shape[:2]
        boxes: list[tuple[float, float, float, float]] = []
        sources: list[str] = []
        if self._detector is not None:
            self._update_detections(out)
            boxes += self._detected
            sources += ["detector"] * len(self._detected)
        self._frames += 1

        head = None
        if keypoints_px is not None and scores is not None:
            reliable = reliable_mask(keypoints_px, scores, self.min_score)
            head = locate_head(keypoints_px, reliable, self.joint_names, self.settings)
        if head is None:
            return self._whole_frame(out, "head not located")
        boxes += list(self._recent_heads)
        sources += ["head"] * len(self._recent_heads)
        if self._recent_heads.maxlen:
            self._recent_heads.append(head.box_xyxy)
        boxes.append(head.box_xyxy)
        sources.append(head.source)

        clipped, kept = [], []
        for box, source in zip(boxes, sources):
            c = clip_box(box, (w, h))
            if c is not None and c not in clipped:  # a still head repeats its box: blur it once
                clipped.append(c)
                kept.append(source)
        if head.source not in kept:
            # The located head lies wholly outside the frame: no face of this person is visible, but a
            # mistaken pose must not leave the frame unblurred either.
            return self._whole_frame(out, "head box outside the frame")
        for box in clipped:
            blur_box(out, box, self.settings.blocks_across_box)
        return AnonymizedFrame(out, tuple(clipped), tuple(kept), reason=head.source)

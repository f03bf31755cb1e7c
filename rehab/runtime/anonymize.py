"""Face anonymisation that fails closed: every face, the patient's and the bystanders'.

Two sources of face boxes, both blurred on every frame:
- the patient's head from the pose's head joints (LSP and MPII have head_top and neck, no eyes or nose), sized
  from the head segment or, failing that, from the shoulders or the torso, and generously padded; when the head
  cannot be located at all the whole frame is blurred;
- every face the CenterFace detector finds (rehab.runtime.centerface), padded, held for a few frames after the
  detector last saw it (detectors blink), moved with its measured velocity and grown with its age. In the loop
  (batch, the default) the detector sees every frame; on a worker thread (live video) it sees the newest frame
  whenever it is free, and its boxes are carried and grown over the frames that arrive meanwhile. A missing or
  corrupt model, an error, or boxes older than the configured age blur the whole frame.
An unblurred face is the one outcome this module must not produce.

The blur averages the box down to a few blocks across and enlarges that smoothly again; about three blocks
across a face leave nothing a person or a face detector could recognise.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np

from rehab.runtime.centerface import CenterFace, FaceDetections, FaceModelError, box_iou
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

# A new detection continues a carried face box when it overlaps the box's prediction by this IoU.
TRACK_MATCH_IOU = 0.1
# A measured face speed above this many face sizes per frame is a mismatch, not motion: it is capped.
MAX_SPEED_PER_FRAME = 0.5

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


@dataclass
class FaceTrack:
    """One face the detector found: its last box, where and when it was seen, and its velocity."""

    box_xyxy: np.ndarray  # float (4,), frame pixels
    seen_frame: int  # index of the frame the detector saw it on
    velocity_px: np.ndarray = field(default_factory=lambda: np.zeros(2))  # box centre, pixels per frame
    misses: int = 0  # detector runs in a row that did not see it

    def box_at(self, frame: int, growth_per_frame: float, max_growth: float) -> tuple[float, float, float, float]:
        """The region the face can be in at ``frame``: last box and its moved copy, grown with the age."""
        age = max(frame - self.seen_frame, 0)
        moved = self.box_xyxy + np.tile(self.velocity_px * age, 2)
        x1, y1 = min(self.box_xyxy[0], moved[0]), min(self.box_xyxy[1], moved[1])
        x2, y2 = max(self.box_xyxy[2], moved[2]), max(self.box_xyxy[3], moved[3])
        grow = min(growth_per_frame * age, max_growth)
        size = max(self.box_xyxy[2] - self.box_xyxy[0], self.box_xyxy[3] - self.box_xyxy[1])
        return (float(x1 - grow * size), float(y1 - grow * size), float(x2 + grow * size), float(y2 + grow * size))


class FaceTracker:
    """Detector boxes carried between detector runs: matched, moved, held while the detector blinks."""

    def __init__(self, settings: AnonymizeSettings) -> None:
        self.settings = settings
        self.tracks: list[FaceTrack] = []
        self.last_run_frame: int | None = None

    def reset(self) -> None:
        self.tracks = []
        self.last_run_frame = None

    def update(self, found: FaceDetections, frame: int) -> None:
        """Take the detections of the frame with index ``frame``."""
        s = self.settings
        boxes = np.asarray(found.boxes_xyxy, np.float64).reshape(-1, 4)
        predicted = np.array([t.box_at(frame, 0.0, 0.0) for t in self.tracks]).reshape(-1, 4)
        iou = box_iou(boxes, predicted) if len(boxes) and len(predicted) else np.zeros((len(boxes), len(predicted)))
        matched_tracks: set[int] = set()
        new_tracks: list[FaceTrack] = []
        for d in np.argsort(-found.scores, kind="stable"):
            candidates = [(iou[d, t], t) for t in range(len(self.tracks)) if t not in matched_tracks
                          and iou[d, t] > TRACK_MATCH_IOU]
            box = boxes[d]
            if not candidates:
                new_tracks.append(FaceTrack(box.copy(), frame))
                continue
            _, t = max(candidates)
            matched_tracks.add(t)
            track = self.tracks[t]
            frames = frame - track.seen_frame
            if frames > 0:
                centre_new = (box[:2] + box[2:]) / 2.0
                centre_old = (track.box_xyxy[:2] + track.box_xyxy[2:]) / 2.0
                size = max(box[2] - box[0], box[3] - box[1], 1.0)
                velocity = (centre_new - centre_old) / frames
                speed = float(np.linalg.norm(velocity))
                if speed > MAX_SPEED_PER_FRAME * size:
                    velocity *= MAX_SPEED_PER_FRAME * size / speed
                track.velocity_px = velocity
            track.box_xyxy, track.seen_frame, track.misses = box.copy(), frame, 0
        kept = []
        for i, track in enumerate(self.tracks):
            if i not in matched_tracks:
                track.misses += 1
                if track.misses > s.face_hold_runs and frame - track.seen_frame > s.face_hold_frames:
                    continue
            kept.append(track)
        self.tracks = kept + new_tracks
        self.last_run_frame = frame if self.last_run_frame is None else max(self.last_run_frame, frame)

    def boxes_at(self, frame: int) -> list[tuple[float, float, float, float]]:
        s = self.settings
        return [pad_box(t.box_at(frame, s.face_growth_per_frame, s.face_max_growth), s.face_detector_margin)
                for t in self.tracks]


@dataclass
class Anonymizer:
    """Blurs faces in each frame; stateful for the face tracks, the detector's worker and recent head boxes.

    ``detector`` (keyword) shares an already loaded CenterFace; by default one is loaded from the model fetched
    at set-up when ``settings.face_detector`` is on.
    """

    joint_names: tuple[str, ...]
    settings: AnonymizeSettings = field(default_factory=AnonymizeSettings)
    min_score: float = 0.3
    detector: CenterFace | None = None

    def __post_init__(self) -> None:
        self.joint_names = tuple(self.joint_names)
        s = self.settings
        # Why the face detector cannot be used; every frame is then blurred whole (never open).
        self.detector_error = ""
        if s.enabled and s.face_detector and self.detector is None:
            threads = s.face_detector_background_threads if s.face_detector_background else s.face_detector_threads
            try:
                self.detector = CenterFace(max_side_px=s.face_detector_max_side_px,
                                           threshold=s.face_detector_threshold, threads=threads)
            except (FaceModelError, ValueError) as exc:
                self.detector_error = str(exc)
                logger.error("face detector unavailable, every frame will be blurred whole: %s", exc)
        if not s.face_detector:
            self.detector = None
        self._tracker = FaceTracker(s)
        self._frames = 0
        self._executor: ThreadPoolExecutor | None = None
        self._pending: Future | None = None
        self._pending_frame = -1
        self._last_submit = None
        self._recent_heads: deque = deque(maxlen=s.head_box_memory_frames)

    @property
    def has_face_detector(self) -> bool:
        return self.detector is not None

    def reset(self) -> None:
        self._frames = 0
        self._tracker.reset()
        self._pending = None
        self._last_submit = None
        self._recent_heads.clear()

    def close(self) -> None:
        """Stop the detector's worker thread (if any)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def _detect(self, frame_bgr: np.ndarray) -> FaceDetections:
        return self.detector.detect(frame_bgr)

    def _update_detections(self, frame_bgr: np.ndarray) -> str:
        """Run or collect the detector for this frame; why the whole frame must be blurred ("" when not)."""
        s, frame = self.settings, self._frames
        if not s.face_detector_background:
            if frame % s.face_detector_every_frames == 0:
                self._tracker.update(self._detect(frame_bgr), frame)
            return ""
        if self._pending is not None and self._pending.done():
            pending, self._pending = self._pending, None
            self._tracker.update(pending.result(), self._pending_frame)  # an error here blurs the whole frame
        due = self._last_submit is None or frame - self._last_submit >= s.face_detector_background_every_frames
        if due and self._pending is None:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="face-detector")
            # ONNX Runtime releases the GIL while it runs, so the worker runs beside the pose model.
            self._pending = self._executor.submit(self._detect, frame_bgr.copy())
            self._pending_frame, self._last_submit = frame, frame
        last = self._tracker.last_run_frame
        if last is None:
            return "waiting for the face detector"
        if frame - last > s.face_detector_max_age_frames:
            logger.debug("face detector %d frames behind", frame - last)
            return "face detector too far behind"
        return ""

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
        finally:
            self._frames += 1

    def _whole_frame(self, out: np.ndarray, reason: str) -> AnonymizedFrame:
        h, w = out.shape[:2]
        out[:] = pixelate(out, self.settings.blocks_across_frame)
        return AnonymizedFrame(out, ((0, 0, w, h),), ("frame",), whole_frame=True, reason=reason)

    def _anonymize(self, out: np.ndarray, keypoints_px, scores) -> AnonymizedFrame:
        h, w = out.shape[:2]
        boxes: list[tuple[float, float, float, float]] = []
        sources: list[str] = []
        if self.detector_error:
            return self._whole_frame(out, "face detector unavailable")
        if self.detector is not None:
            behind = self._update_detections(out)
            if behind:
                return self._whole_frame(out, behind)
            detected = self._tracker.boxes_at(self._frames)
            boxes += detected
            sources += ["detector"] * len(detected)

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

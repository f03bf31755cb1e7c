"""The face-leak check: faces on the raw frames of a clip that can still be found on the written (anonymised) ones.

Shared by the integration test (in-project detectors) and benchmarks/bench_faces.py (which adds MediaPipe's
face detector and deface's output as an anchor). The protocol:

- raw faces: CenterFace at score >= 0.5 on every ``every``-th RAW frame at full resolution (plus, in the
  benchmark, any other detector's boxes that do not overlap these);
- found again: on the same frame of the WRITTEN video (decoded back from its H.264 file), CenterFace at
  >= 0.3, or OpenCV's Haar frontal-face cascade, or (benchmark) another detector, fires at IoU > 0.2 with a raw
  face. The target is 0 found again.

The oracle runs at full resolution, the product's detector on a 960-px copy at its own threshold, so the
check is not the blurring detector judging itself; Haar (and MediaPipe in the benchmark) are independent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import cv2
import numpy as np

from rehab.runtime.centerface import CenterFace, box_iou
from rehab.runtime.video import VideoWriter, probe_video, read_frames

if TYPE_CHECKING:
    from rehab.runtime.model import PoseModel
    from rehab.settings import RuntimeSettings

logger = logging.getLogger(__name__)

RAW_MIN_SCORE = 0.5
AGAIN_MIN_SCORE = 0.3
MATCH_IOU = 0.2
EVERY_FRAMES = 5
HAAR_CASCADE = "haarcascade_frontalface_default.xml"
# OpenCV's defaults, with a small minimum: the strict side for a check that must find what is left.
HAAR_SCALE_FACTOR = 1.1
HAAR_MIN_NEIGHBORS = 3
HAAR_MIN_FACE_PX = 16

Boxes = np.ndarray  # (N, 4) x1, y1, x2, y2 in frame pixels


@dataclass(frozen=True)
class Leak:
    frame: int
    box_xyxy: tuple[float, float, float, float]
    found_by: tuple[str, ...]


@dataclass
class LeakReport:
    clip: str
    frames_checked: int = 0
    frames_with_faces: int = 0
    raw_faces: int = 0
    raw_faces_by: dict[str, int] = field(default_factory=dict)
    found_again: int = 0
    found_again_by: dict[str, int] = field(default_factory=dict)
    leaks: list[Leak] = field(default_factory=list)
    # Raw faces (frame, index in that frame's raw list) not found again: what this written video covers.
    covered: set[tuple[int, int]] = field(default_factory=set)

    def as_dict(self) -> dict:
        return {"clip": self.clip, "frames_checked": self.frames_checked, "frames_with_faces": self.frames_with_faces,
                "raw_faces": self.raw_faces, "raw_faces_by": dict(self.raw_faces_by), "found_again": self.found_again,
                "found_again_by": dict(self.found_again_by),
                "leaks": [{"frame": k.frame, "box_xyxy": [round(v, 1) for v in k.box_xyxy], "found_by": list(k.found_by)}
                          for k in self.leaks]}


def haar_cascade() -> cv2.CascadeClassifier:
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if not folder:
        raise FileNotFoundError(f"OpenCV {cv2.__version__} ships no Haar cascades (cv2.data); the face-leak "
                                "check needs opencv-python-headless<5, as pyproject.toml pins")
    cascade = cv2.CascadeClassifier(str(Path(folder) / HAAR_CASCADE))
    if cascade.empty():
        raise ValueError(f"could not load {HAAR_CASCADE} from {folder}")
    return cascade


class LeakOracle:
    """The in-project detectors of the check: CenterFace at full resolution and a Haar frontal cascade."""

    def __init__(self, threads: int = 2) -> None:
        self.centerface = CenterFace(max_side_px=None, threshold=AGAIN_MIN_SCORE, threads=threads)
        self.haar = haar_cascade()

    def centerface_boxes(self, frame_bgr: np.ndarray, min_score: float) -> Boxes:
        return self.centerface.detect(frame_bgr, threshold=min_score).boxes_xyxy.astype(np.float64).reshape(-1, 4)

    def haar_boxes(self, frame_bgr: np.ndarray) -> Boxes:
        grey = cv2.equalizeHist(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY))
        found = self.haar.detectMultiScale(grey, scaleFactor=HAAR_SCALE_FACTOR, minNeighbors=HAAR_MIN_NEIGHBORS,
                                           minSize=(HAAR_MIN_FACE_PX, HAAR_MIN_FACE_PX))
        xywh = np.asarray(found, np.float64).reshape(-1, 4)
        return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)


def write_anonymised(model: "PoseModel", clip: str | Path, out: str | Path, settings: "RuntimeSettings | None" = None,
                     exercise: str | None = None) -> Path:
    """Run ``clip`` through the Pipeline and write its frames as ``rehab process`` writes annotated.mp4."""
    from rehab.pipeline import Pipeline

    pipe = Pipeline(model, settings, exercise)
    with VideoWriter(out, fps=probe_video(clip).fps) as writer:
        for frame, t in read_frames(clip):
            writer.write(pipe.process(frame, t).frame_bgr)
    return Path(out)


def _union(primary: Boxes, extra: Boxes) -> Boxes:
    """``primary`` plus the boxes of ``extra`` that overlap none of them (one face counted once)."""
    if len(extra) == 0:
        return primary
    if len(primary) == 0:
        return extra
    new = box_iou(extra, primary).max(axis=1) <= MATCH_IOU
    return np.concatenate([primary, extra[new]])


def check_clip(raw_clip: str | Path, written_clip: str | Path, oracle: LeakOracle, every: int = EVERY_FRAMES,
               raw_extra: Mapping[str, Mapping[int, Boxes]] | None = None,
               again_extra: Mapping[str, Mapping[int, Boxes]] | None = None,
               raw_faces: Mapping[int, Boxes] | None = None) -> tuple[LeakReport, dict[int, Boxes]]:
    """Count raw faces of every ``every``-th frame and those found again in ``written_clip``.

    ``raw_extra`` / ``again_extra``: other detectors' boxes per frame index (name -> {frame: boxes}).
    ``raw_faces``: the raw faces of an earlier call on the same clip (so that two written videos are judged
    on the same faces); returned as the second value.
    """
    raw_extra, again_extra = raw_extra or {}, again_extra or {}
    report = LeakReport(Path(raw_clip).name)
    faces_per_frame: dict[int, Boxes] = {}
    written = read_frames(written_clip, every=every)
    raw_iter = read_frames(raw_clip, every=every)
    for i, ((raw, _), (done, _)) in enumerate(zip(raw_iter, written)):
        index = i * every
        report.frames_checked += 1
        if raw_faces is not None:
            faces = raw_faces.get(index, np.zeros((0, 4)))
        else:
            faces = oracle.centerface_boxes(raw, RAW_MIN_SCORE)
            report.raw_faces_by["centerface"] = report.raw_faces_by.get("centerface", 0) + len(faces)
            for name, per_frame in raw_extra.items():
                before = len(faces)
                faces = _union(faces, np.asarray(per_frame.get(index, np.zeros((0, 4))), np.float64).reshape(-1, 4))
                report.raw_faces_by[name] = report.raw_faces_by.get(name, 0) + len(faces) - before
        faces_per_frame[index] = faces
        if len(faces) == 0:
            continue
        report.frames_with_faces += 1
        report.raw_faces += len(faces)
        done = done[:raw.shape[0], :raw.shape[1]]
        again = {"centerface": oracle.centerface_boxes(done, AGAIN_MIN_SCORE), "haar": oracle.haar_boxes(done)}
        for name, per_frame in again_extra.items():
            again[name] = np.asarray(per_frame.get(index, np.zeros((0, 4))), np.float64).reshape(-1, 4)
        hits = {name: (box_iou(faces, boxes).max(axis=1) > MATCH_IOU) if len(boxes) else np.zeros(len(faces), bool)
                for name, boxes in again.items()}
        for j, face in enumerate(faces):
            by = tuple(name for name, hit in hits.items() if hit[j])
            if by:
                report.found_again += 1
                for name in by:
                    report.found_again_by[name] = report.found_again_by.get(name, 0) + 1
                report.leaks.append(Leak(index, tuple(float(v) for v in face), by))
            else:
                report.covered.add((index, j))
    if report.frames_checked == 0:
        raise ValueError(f"no frames compared: is {written_clip} empty?")
    logger.info("%s: %s", report.clip, report.as_dict())
    return report, faces_per_frame

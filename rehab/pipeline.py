"""The one frame loop: frame + timestamp -> FrameResult. The live dashboard and batch processing both use it.

Stages, each timed: roi (where to look) -> pose (the model) -> smooth (One Euro, reliability) -> angles ->
reps (exercise counter) -> anonymize (face blur, fails closed) -> draw (skeleton, angles, panel).

Nobody there means no skeleton: a model with a presence output says whether a person is in the region it
looked at, and below the threshold the frame reports no person (no skeleton, no angles, no counting). While
nobody is tracked, every frame is a search: the whole frame and overlapping windows go through the model in
one batch and the most present one wins, so a person entering far from where the last one was is found.

The only image a FrameResult carries is the anonymised, annotated one: the raw frame never leaves the
pipeline, so nothing downstream (recordings, snapshots, the browser) can bypass the face blur unless the
settings turn anonymisation off explicitly.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Mapping

import numpy as np

from rehab.analysis.exercises import Exercise, get_exercise
from rehab.analysis.gating import AngleGate
from rehab.analysis.panel import panel_lines
from rehab.analysis.reps import ExerciseRep, ExerciseTracker, RepState
from rehab.analysis.summary import SessionSummary, summarize
from rehab.core.angles import joint_angles
from rehab.core.skeleton import JointSet, joint_set_from_names
from rehab.runtime.anonymize import Anonymizer
from rehab.runtime.draw import draw_frame
from rehab.runtime.image import as_bgr_frame
from rehab.runtime.roi import (RoiDecision, RoiTracker, best_window, presence_thresholds, roi_from_pose,
                               search_windows)
from rehab.runtime.smoothing import PoseSmoother
from rehab.settings import RuntimeSettings

if TYPE_CHECKING:
    from rehab.runtime.model import Pose, PoseModel

logger = logging.getLogger(__name__)

STAGES = ("roi", "pose", "smooth", "angles", "reps", "anonymize", "draw")


@dataclass(frozen=True, eq=False)
class FrameResult:
    frame_index: int
    timestamp_s: float
    # The smoothed pose (filtered where reliable, the model's own position elsewhere); None when no person
    # was found (fewer confident joints than settings.roi.min_joints).
    pose: "Pose | None"
    raw_pose: "Pose | None"  # the model's output as it came
    # The model's probability that a person is in the region it looked at; None for a model without a
    # presence output (then "found" rests on the joint scores alone).
    presence: float | None
    reliable: np.ndarray  # (K,) bool: joints confident enough to measure and draw as measured
    angles_deg: Mapping[str, float]  # NaN where a needed joint is unreliable
    reps: RepState | None  # None when no exercise is being counted
    roi_xyxy: tuple[float, float, float, float] | None  # region the model looked at; None = whole frame
    roi_reason: str
    timings_ms: Mapping[str, float]  # per stage, plus "total"
    frame_bgr: np.ndarray  # anonymised (unless turned off) and annotated; read-only
    anonymized: bool
    anonymization: str  # how the faces were found: "head", "shoulders", "whole frame: ...", or "off"
    face_boxes_xyxy: tuple[tuple[int, int, int, int], ...] = ()
    new_rep: ExerciseRep | None = field(default=None)

    @property
    def person_found(self) -> bool:
        return self.pose is not None

    @property
    def total_ms(self) -> float:
        return self.timings_ms["total"]


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


class Pipeline:
    """Stateful per video stream (tracking, smoothing, counting): one Pipeline per camera or file."""

    def __init__(self, model: "PoseModel", settings: RuntimeSettings | None = None,
                 exercise: Exercise | str | None = None) -> None:
        self.model = model
        self.settings = settings or RuntimeSettings()
        self.joint_names: tuple[str, ...] = tuple(model.info.joint_names)
        self.joint_set: JointSet = joint_set_from_names(self.joint_names, name=getattr(model.info, "name", "model"))
        min_score = self.settings.scores.joint_min_score
        self._roi = RoiTracker(self.settings.roi, min_score)
        self._smoother = PoseSmoother(len(self.joint_names), self.settings.smoothing, min_score)
        self._anonymizer = Anonymizer(self.joint_names, self.settings.anonymize, min_score)
        self._gate = AngleGate(self.settings.angles)
        self.presence_min, self.presence_acquire_min = self._presence_thresholds()
        self._holding = False  # a person was found on the previous frame (presence_min keeps them)
        self.exercise: Exercise | None = None
        self._tracker: ExerciseTracker | None = None
        self.set_exercise(exercise)
        self._frame_index = 0
        self._last_t = -math.inf
        self._seen_run = 0  # consecutive frames on which the model found a person (roi.confirm_frames)
        if not self.settings.anonymize.enabled:
            logger.warning("face anonymisation is OFF by the settings: frames leave the pipeline unblurred")

    def set_exercise(self, exercise: Exercise | str | None) -> None:
        """Count another exercise from now on (its counts start at zero)."""
        if isinstance(exercise, str):
            exercise = get_exercise(exercise)
        self.exercise = exercise
        self._tracker = ExerciseTracker(exercise) if exercise is not None else None

    def reset(self) -> None:
        """Start a new stream: forget tracking, smoothing, counts and the clock."""
        self._roi.reset()
        self._smoother.reset()
        self._anonymizer.reset()
        self._gate.reset()
        if self._tracker is not None:
            self._tracker.reset()
        self._frame_index = 0
        self._last_t = -math.inf
        self._seen_run = 0
        self._holding = False

    @property
    def reps(self) -> list[ExerciseRep]:
        return list(self._tracker.reps) if self._tracker is not None else []

    def summary(self) -> SessionSummary | None:
        if self.exercise is None:
            return None
        return summarize(self.exercise.name, self.reps)

    def _presence_thresholds(self) -> tuple[float | None, float | None]:
        """(keep, acquire) presence a person needs (settings first, else the model's own); None: no presence output."""
        info, scores = self.model.info, self.settings.scores
        if not info.has_presence and scores.presence_min is not None:
            logger.warning("scores.presence_min is set but model %s has no presence output: a person is "
                           "found from the joint scores alone", getattr(info, "name", "?"))
        return presence_thresholds(info, scores.presence_min, scores.presence_acquire_min)

    def _need(self) -> float | None:
        """The presence a person needs on this frame: to stay tracked, or to be acquired."""
        return self.presence_min if self._holding else self.presence_acquire_min

    def _absent_reason(self, presence: float | None) -> str:
        """Why nobody is there ("" when somebody may be: the joints decide then)."""
        need = self._need()
        if need is None or presence is None or presence >= need:
            return ""
        return f"nobody here (presence {presence:.2f} < {need:.2f})"

    def _search(self, frame: np.ndarray, size: tuple[int, int]) -> tuple["Pose", RoiDecision]:
        """Look for a person in the whole frame and in overlapping windows, widest view first.

        A model without a presence output looks at the whole frame only: its joint scores are high on
        background too, so they cannot say which window holds the person. The winner is refined on the region
        its joints span, as a whole-frame pass sees a small person at a fraction of the model's resolution.
        """
        s = self.settings
        scales = s.roi.search_window_scales if self.presence_min is not None else ()
        windows = search_windows(size, scales, s.roi.search_overlap, min(self.model.info.input_size))
        poses = self.model.predict_batch_checked([frame] * len(windows), windows) if len(windows) > 1 else [
            self.model.predict_checked(frame)]
        # The view is chosen at the acquire threshold even for a tracked person: at the keep threshold the whole
        # frame nearly always qualifies and would win over a window that holds the person clearly.
        best = best_window([p.presence or 0.0 for p in poses], self.presence_acquire_min,
                           [int((p.scores >= s.scores.joint_min_score).sum()) for p in poses], s.roi.min_joints)
        raw = poses[best]
        where = "whole frame" if windows[best] is None else f"window {best} of {len(windows) - 1}"
        region = RoiDecision(windows[best], f"search: {where}")
        if s.roi.refine_bootstrap and not self._absent_reason(raw.presence):
            refined = roi_from_pose(raw.keypoints_px, raw.scores, size, s.roi, s.scores.joint_min_score)
            if not refined.bootstrap:
                again = self.model.predict_checked(frame, bbox_xyxy=refined.box_xyxy)
                # The refinement sharpens the joints of a find; it does not undo it.
                if not self._absent_reason(again.presence):
                    raw = again
                    region = RoiDecision(refined.box_xyxy, f"search: {where}, refined on its region")
        return raw, region

    def process(self, frame_bgr: np.ndarray, timestamp_s: float) -> FrameResult:
        t_start = time.perf_counter()
        frame = as_bgr_frame(frame_bgr, "frame_bgr")
        timestamp_s = float(timestamp_s)
        if not math.isfinite(timestamp_s):
            raise ValueError(f"timestamp_s must be a finite number of seconds, got {timestamp_s}")
        if timestamp_s < self._last_t:
            raise ValueError(f"timestamp_s went backwards ({timestamp_s} s after {self._last_t} s); "
                             "call Pipeline.reset() before a new stream or after a seek")
        self._last_t = timestamp_s
        h, w = frame.shape[:2]
        s = self.settings
        min_score = s.scores.joint_min_score
        timings: dict[str, float] = {}
        clock = [time.perf_counter()]

        def lap(stage: str) -> None:
            now = time.perf_counter()
            timings[stage] = (now - clock[0]) * 1000.0
            clock[0] = now

        region: RoiDecision = self._roi.next_region((w, h))
        used = region  # what the tracker is told: a search or a refined bootstrap is still a bootstrap
        lap("roi")

        if region.bootstrap and s.roi.enabled:
            raw, region = self._search(frame, (w, h))
        else:
            raw = self.model.predict_checked(frame, bbox_xyxy=region.box_xyxy)
            if s.roi.enabled and s.roi.search_on_loss and self._absent_reason(raw.presence):
                # The crop drifted off the person, or they left: look at the whole frame now, not next frame.
                raw, found_at = self._search(frame, (w, h))
                region = RoiDecision(found_at.box_xyxy, f"{found_at.reason} (track lost)")
                used = RoiDecision(None, region.reason)
        presence = raw.presence
        absent = self._absent_reason(presence)
        lap("pose")

        self._roi.update(raw.keypoints_px, raw.scores, (w, h), used=used, absent_reason=absent)
        if absent:
            # Whoever appears next is tracked and smoothed afresh, never blended with this frame's joints.
            self._smoother.reset()
        smoothed = self._smoother.update(raw.keypoints_px, raw.scores, timestamp_s, frame_height=h)
        reliable = smoothed.reliable
        seen = not absent and int(reliable.sum()) >= s.roi.min_joints
        self._seen_run = self._seen_run + 1 if seen else 0
        found = seen and self._seen_run >= s.roi.confirm_frames
        self._holding = found
        pose = replace(raw, keypoints_px=smoothed.keypoints_px) if found else None
        lap("smooth")

        angles = {k: float(v) if found else math.nan
                  for k, v in joint_angles(smoothed.keypoints_px, self.joint_names, raw.scores, min_score).items()}
        if found:
            angles = self._gate(angles, timestamp_s)
        lap("angles")

        rep_state = self._tracker.update(angles, timestamp_s) if self._tracker is not None else None
        lap("reps")

        # The face box follows this frame's raw joints: smoothed ones lag behind a moving head.
        anon = self._anonymizer(frame, raw.keypoints_px if found else None, raw.scores if found else None)
        lap("anonymize")

        out = anon.frame_bgr
        if s.draw.enabled:
            draw_frame(out, keypoints_px=smoothed.keypoints_px if found else None, scores=raw.scores,
                       reliable=reliable, joint_set=self.joint_set, angles_deg=angles, min_score=min_score,
                       angle_names=self.exercise.angles if self.exercise is not None else None,
                       panel=panel_lines(rep_state, self.exercise) if (
                           s.draw.draw_panel and rep_state is not None and self.exercise is not None) else (),
                       draw_angle_values=s.draw.draw_angles, draw_unreliable=s.draw.draw_unreliable)
        lap("draw")
        timings["total"] = (time.perf_counter() - t_start) * 1000.0

        if not s.anonymize.enabled:
            how = "off"
        elif anon.whole_frame:
            how = f"whole frame: {anon.reason}"
        else:
            how = "+".join(dict.fromkeys(anon.sources))
        result = FrameResult(
            frame_index=self._frame_index, timestamp_s=timestamp_s, pose=pose, raw_pose=raw, presence=presence,
            reliable=_readonly(reliable.copy()), angles_deg=MappingProxyType(angles), reps=rep_state,
            roi_xyxy=region.box_xyxy, roi_reason=region.reason, timings_ms=MappingProxyType(timings),
            frame_bgr=_readonly(out), anonymized=s.anonymize.enabled, anonymization=how,
            face_boxes_xyxy=anon.boxes_xyxy, new_rep=rep_state.new_rep if rep_state is not None else None,
        )
        self._frame_index += 1
        return result


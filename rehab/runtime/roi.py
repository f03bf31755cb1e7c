"""Person region of interest: where in the frame the pose model looks.

The first frame (and any frame after the person was lost) is a whole-frame, letterboxed pass. After a
confident pose, the next frame is cropped around that pose's confident joints, padded, so the person fills
the network input instead of a small part of a letterboxed frame. The tracker falls back to a whole-frame
pass when the mean joint score drops below a threshold, too few joints are confident, or the box leaves the
frame.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from rehab.core.transforms import keypoints_box
from rehab.runtime.smoothing import reliable_mask
from rehab.settings import RoiSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoiDecision:
    """The region for the next pose pass: ``box_xyxy`` None means the whole frame (bootstrap)."""

    box_xyxy: tuple[float, float, float, float] | None
    reason: str

    @property
    def bootstrap(self) -> bool:
        return self.box_xyxy is None


def inside_fraction(box_xyxy, frame_size) -> float:
    """Fraction of the box's area that lies inside a (w, h) frame."""
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    w, h = (float(v) for v in frame_size)
    area = max(x2 - x1, 0.0) * max(y2 - y1, 0.0)
    if area <= 0:
        return 0.0
    ix = max(min(x2, w) - max(x1, 0.0), 0.0)
    iy = max(min(y2, h) - max(y1, 0.0), 0.0)
    return ix * iy / area


def roi_from_pose(keypoints_px: np.ndarray, scores: np.ndarray, frame_size, settings: RoiSettings,
                  min_score: float) -> RoiDecision:
    """The region to look at in the next frame, given this frame's pose."""
    scores = np.asarray(scores, dtype=np.float64)
    reliable = reliable_mask(keypoints_px, scores, min_score)
    mean_score = float(np.nanmean(scores)) if scores.size else 0.0
    if mean_score < settings.min_mean_score:
        return RoiDecision(None, f"bootstrap: mean score {mean_score:.2f} < {settings.min_mean_score}")
    if int(reliable.sum()) < settings.min_joints:
        return RoiDecision(None, f"bootstrap: {int(reliable.sum())} confident joints < {settings.min_joints}")
    box = keypoints_box(keypoints_px, reliable, margin=settings.margin)
    if box is None:
        return RoiDecision(None, "bootstrap: no box from the joints")
    frac = inside_fraction(box, frame_size)
    if frac < settings.min_inside_fraction:
        return RoiDecision(None, f"bootstrap: box {frac:.0%} inside the frame < {settings.min_inside_fraction:.0%}")
    return RoiDecision(tuple(float(v) for v in box), "track")


def search_windows(frame_size, scales, overlap: float,
                   input_side: float = 0.0) -> list[tuple[float, float, float, float] | None]:
    """The regions a search for a person looks at: None (the whole frame) first, then square windows.

    Each scale is a window side as a fraction of the frame's shorter side; the windows of one scale tile the
    frame with neighbours sharing ``overlap`` of their side, the first and last touching the frame's edges.
    A frame whose longer side fits in ``input_side`` pixels (the model's input side) is searched whole only:
    the model already sees every pixel of it, and a window would show it enlarged, no sharper. In a larger frame
    a window is seen sharper than in the whole frame, even one narrower than the input; windows narrower than
    half the input are skipped all the same (a small person in them is blown up more than 2x, from few pixels).
    """
    w, h = (float(v) for v in frame_size)
    windows: list[tuple[float, float, float, float] | None] = [None]
    if max(w, h) <= input_side:
        return windows
    for scale in scales:
        side = scale * min(w, h)
        if side < input_side / 2:
            continue
        step = side * (1.0 - overlap)

        def starts(length: float) -> list[float]:
            if length <= side:
                return [0.0]
            n = math.ceil((length - side) / step) + 1
            return [i * (length - side) / (n - 1) for i in range(n)]

        for y in starts(h):
            for x in starts(w):
                box = (x, y, x + side, y + side)
                if box != (0.0, 0.0, w, h) and box not in windows:
                    windows.append(box)
    return windows


def presence_thresholds(info, keep: float | None = None,
                        acquire: float | None = None) -> tuple[float | None, float | None]:
    """(keep, acquire) presence thresholds of a model (``info``: its ModelInfo); (None, None) without a presence
    output. ``keep`` / ``acquire`` given (the settings) win over the model's metadata; acquire defaults to keep."""
    if not info.has_presence:
        return None, None
    keep = float(info.presence_threshold) if keep is None else float(keep)
    if acquire is None:
        acquire = info.presence_acquire_threshold
    acquire = keep if acquire is None else float(acquire)
    if acquire < keep:
        raise ValueError(f"scores.presence_acquire_min ({acquire}) must be at least the presence that keeps a "
                         f"tracked person ({keep})")
    return keep, acquire


def best_window(presences, need: float | None, confident_joints=None, min_joints: int = 0) -> int:
    """Index of the search view to follow: the widest one (views come widest first) that finds somebody, its
    presence reaching ``need`` with at least ``min_joints`` of its ``confident_joints`` (per view); else the
    widest whose presence reaches ``need``; else the most present. A window cut through a person also scores
    high for the half it shows, and tracking from it would lose the rest, so a wider view that finds somebody
    wins. A view with a high presence but too few confident joints (a small far figure) cannot be tracked, and
    would hold the search on it while a nearer person goes unreported."""
    if need is None:
        return 0
    present = [i for i, v in enumerate(presences) if v >= need]
    if confident_joints is not None:
        trackable = [i for i in present if confident_joints[i] >= min_joints]
        present = trackable or present
    return present[0] if present else int(np.argmax(presences))


class RoiTracker:
    """Carries the region from one frame's pose to the next frame."""

    def __init__(self, settings: RoiSettings | None = None, min_score: float = 0.3) -> None:
        self.settings = settings or RoiSettings()
        self.min_score = float(min_score)
        self.reset()

    def reset(self) -> None:
        self._next = RoiDecision(None, "bootstrap: first frame")
        self._tracked_frames = 0
        self._frame_size: tuple[int, int] | None = None

    def next_region(self, frame_size) -> RoiDecision:
        """Region for the frame about to be processed; ``frame_size`` is (w, h)."""
        frame_size = (int(frame_size[0]), int(frame_size[1]))
        if not self.settings.enabled:
            return RoiDecision(None, "whole frame: ROI tracking off")
        if self._frame_size is not None and frame_size != self._frame_size:
            self._next = RoiDecision(None, f"bootstrap: frame size changed {self._frame_size} -> {frame_size}")
        self._frame_size = frame_size
        every = self.settings.rebootstrap_every_frames
        if not self._next.bootstrap and every and self._tracked_frames >= every:
            return RoiDecision(None, f"bootstrap: periodic, every {every} frames")
        return self._next

    def update(self, keypoints_px: np.ndarray | None, scores: np.ndarray | None, frame_size,
               used: RoiDecision, absent_reason: str = "") -> RoiDecision:
        """Record the pose found in the region ``used``; returns the decision for the next frame.

        ``absent_reason`` non-empty says that nobody is there (e.g. the model's presence is low): the next
        frame searches again instead of following this pose.
        """
        if absent_reason:
            decision = RoiDecision(None, f"bootstrap: {absent_reason}")
        elif keypoints_px is None or scores is None:
            decision = RoiDecision(None, "bootstrap: no pose")
        else:
            decision = roi_from_pose(keypoints_px, scores, frame_size, self.settings, self.min_score)
        self._tracked_frames = 0 if used.bootstrap else self._tracked_frames + 1
        if decision.bootstrap and not used.bootstrap:
            logger.debug("person lost (%s)", decision.reason)
        self._next = decision
        return decision

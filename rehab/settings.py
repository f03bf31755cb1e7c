"""Runtime settings: one frozen dataclass per stage, defaults in code, an optional YAML/dict override.

Units are in the field names. ``RuntimeSettings.from_dict`` (rehab.core.config, the loader training configs use too) rejects unknown keys
naming the nearest known one and values of the wrong type, so a typo in a settings file is an error, not a
silently ignored value.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from rehab.core.config import from_dict, read_yaml_mapping


@dataclass(frozen=True)
class SmoothingSettings:
    """One Euro filter (Casiez et al. 2012) on every joint coordinate.

    Coordinates are filtered in units of the frame height, so the same settings behave alike at 480p and
    1080p; ``beta`` is therefore per (frame heights per second).
    """

    enabled: bool = True
    min_cutoff_hz: float = 1.0
    beta: float = 4.0
    d_cutoff_hz: float = 1.0
    # A pause this long (a dropped stream, a seek) restarts the filters instead of smoothing across it.
    max_gap_s: float = 1.0

    def __post_init__(self) -> None:
        _positive(self, "min_cutoff_hz", "d_cutoff_hz", "max_gap_s")
        _non_negative(self, "beta")


@dataclass(frozen=True)
class ScoreSettings:
    """Confidence thresholds on the model's per-joint scores (heatmap peak values)."""

    # Joints scored below this are unreliable: not drawn as measured, no angle, no smoothing. 0.2 is the
    # visibility threshold of the Simple Baselines / HRNet code; a blank or noise frame scores under 0.2 on
    # every joint with the interim default model.
    joint_min_score: float = 0.2
    # A person is there when the model's presence output (a probability, for models that have one) reaches
    # this; None takes the threshold stored in the model's metadata, chosen on held-out crops at export.
    presence_min: float | None = None
    # Hysteresis, as trackers do (MediaPipe's detection vs tracking confidence): a person not yet tracked must
    # reach this presence to be acquired (by a search, and on each of roi.confirm_frames); once found, they stay
    # while the presence is at least presence_min. None takes the model's metadata value when it has one, else
    # presence_min (no hysteresis).
    presence_acquire_min: float | None = None

    def __post_init__(self) -> None:
        _unit_interval(self, "joint_min_score")
        for name in ("presence_min", "presence_acquire_min"):
            if getattr(self, name) is not None:
                _unit_interval(self, name)


@dataclass(frozen=True)
class RoiSettings:
    """Person region tracking: whole-frame bootstrap, then a crop around the previous pose."""

    enabled: bool = True
    # Grow the box of the confident joints by this fraction of its size on each side (hands and feet
    # move between frames, and the head top/feet tips lie beyond the joints).
    margin: float = 0.2
    # Re-bootstrap from the whole frame when the mean score of the joints falls below this.
    min_mean_score: float = 0.2
    # A box needs this many confident joints; fewer means the person is lost.
    min_joints: int = 4
    # Re-bootstrap when less than this fraction of the box lies inside the frame.
    min_inside_fraction: float = 0.6
    # Re-bootstrap every this many frames anyway (0 = never), so a second, better-placed person or a
    # drift of the crop cannot lock the tracker onto a wrong region for ever.
    rebootstrap_every_frames: int = 0
    # On a whole-frame (bootstrap) pass, run the model a second time on the region that pass found: a small
    # person in a large frame is seen at a fraction of the model's resolution, and the smoother would carry
    # that coarse first pose into the following frames.
    refine_bootstrap: bool = True
    # While nobody is tracked, look for a person in the whole frame and in square windows whose side is each of
    # these fractions of the frame's shorter side, tiled with the overlap below, and follow the widest view whose
    # presence reaches the acquire threshold with roi.min_joints confident joints (else the widest present one,
    # else the most present one): a person entering at the edge of a wide frame is small in the letterboxed whole
    # frame. A frame that fits in the model's input searches the whole frame only, as does (). The cost (one model
    # input per window: 16 inputs, 115-190 ms on 2 cores for the shipped model at 720p) is paid only while nobody
    # is tracked. The 0.6 windows find the small, backlit people of sports2d_demo that the shipped presence output
    # misses in the whole frame (docs/presence_heads.md).
    search_window_scales: tuple[float, ...] = (1.0, 0.6)
    # Neighbouring windows share this fraction of their side, so a person is whole in at least one window.
    search_overlap: float = 0.34
    # When the tracked region says nobody is there, search the same frame before reporting nobody: a crop that
    # drifted onto part of the person scores a low presence while the person is still in view. Costs one search
    # on the frames where a track is lost, nothing while tracking holds.
    search_on_loss: bool = True
    # A person is reported (skeleton, angles, counting) only once the model has found them on this many
    # consecutive frames: a skeleton flashed for one frame on background is not drawn. 1 reports from the first
    # frame; the delay is (n - 1) frames. Measured on sports2d_cut (tests/presence_clips.py): 2 instead of 1
    # draws a skeleton on 27.8% instead of 30.6% of its person-free frames, and finds the people on 98.1% of
    # their frames instead of 99.4%.
    confirm_frames: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "search_window_scales", tuple(float(v) for v in self.search_window_scales))
        _non_negative(self, "margin", "rebootstrap_every_frames")
        _unit_interval(self, "min_mean_score", "min_inside_fraction")
        if not 0.0 <= self.search_overlap < 1.0:
            raise ValueError(f"RoiSettings.search_overlap must be in [0, 1), got {self.search_overlap}")
        if any(not 0.0 < v <= 1.0 for v in self.search_window_scales):
            raise ValueError("RoiSettings.search_window_scales must be fractions in (0, 1] of the frame's shorter "
                             f"side, got {self.search_window_scales}")
        if self.confirm_frames < 1:
            raise ValueError(f"roi.confirm_frames must be >= 1 (1 reports a person on the first frame found), "
                             f"got {self.confirm_frames}")
        if self.min_joints < 2:
            raise ValueError(f"roi.min_joints must be >= 2 (a box needs two points), got {self.min_joints}")


@dataclass(frozen=True)
class AnonymizeSettings:
    """Face blurring of every frame the pipeline returns (and so of everything written to disk)."""

    # Turning this off is the user's explicit choice: frames then leave the pipeline with faces visible.
    enabled: bool = True
    # Side of the square face box as a multiple of the head length (head_top to neck).
    head_box_per_head_length: float = 2.5
    # Side of the face box as a multiple of the shoulder width when the head joints are unreliable:
    # the head lies within about one shoulder width of the shoulder midpoint in any body orientation.
    head_box_per_shoulder_width: float = 3.0
    # The face box never gets smaller than this fraction of the shoulder width (a collapsed head segment
    # from a poor prediction must not shrink the box onto one eye).
    min_head_box_per_shoulder_width: float = 1.6
    # Head boxes of this many previous frames are blurred too: when the pose misplaces the head for a frame,
    # the face is still where it just was (at 30 fps, 5 frames is a sixth of a second).
    head_box_memory_frames: int = 5
    # Pixelation: the blurred box is reduced to this many blocks across its longer side. Measured on the 65 raw
    # faces of sports2d_demo (boxes padded 0.75 per side): CenterFace at >= 0.3 still finds 12 of them under 6
    # blocks (the smooth enlargement leaves a face-shaped blob), none under 4.
    blocks_across_box: int = 4
    # Blocks across the frame's longer side when the whole frame is blurred (no head located): the face
    # size is unknown then, and a close-up face can fill a fifth of the frame.
    blocks_across_frame: int = 12
    # The CenterFace face detector (rehab.runtime.centerface, fetched at set-up) blurs every face it finds,
    # bystanders included. Off leaves only the pose's head box: the patient's face, nobody else's.
    face_detector: bool = True
    # Score threshold, chosen for recall: on sports2d_demo at 1280 px, 0.1 re-finds all 65 faces the detector
    # scores >= 0.5 at full size (every 5th frame), 0.2 misses one (a bowed head), at a few extra boxes per clip
    # (a blurred patch costs nothing; see benchmarks/README.md, face leak check).
    face_detector_threshold: float = 0.15
    # The detector sees a copy whose longer side is at most this. On sports2d_demo (1768 px, faces of 22-37 px)
    # 960 px finds 63 of those 65 faces, 1280 px all of them (at about twice the cost); 640 px loses most.
    face_detector_max_side_px: int = 1280
    # Detector boxes are tight around the face; pad them by this fraction of their size per side (with
    # blocks_across_box = 4 this leaves under two blocks across the face itself: at three, CenterFace still
    # finds a blurred profile head, see blocks_across_box).
    face_detector_margin: float = 0.75
    # In the loop (batch): run the detector on every N-th frame (1 = every frame written is checked).
    face_detector_every_frames: int = 1
    # Live video: run the detector on a worker thread instead, on the newest frame whenever it is free and at
    # most every N frames; its boxes arrive a few frames late and are carried and grown until the next run.
    # Off by default so that batch results do not depend on timing.
    face_detector_background: bool = False
    face_detector_background_every_frames: int = 3
    # ONNX Runtime threads of the detector in the loop and on the worker (which shares the cores with the pose
    # model: one thread leaves it the other core).
    face_detector_threads: int = 2
    face_detector_background_threads: int = 1
    # On the worker: when the newest detector result is older than this many frames (or none has arrived yet,
    # at the start of a stream) the whole frame is blurred, so a stalled detector fails closed.
    face_detector_max_age_frames: int = 30
    # A face the detector stops seeing stays blurred where it was for this many frames, and for at least this
    # many detector runs (detectors blink: a turned head, motion blur).
    face_hold_frames: int = 8
    face_hold_runs: int = 2
    # Carried boxes grow per side by this fraction of the face size for every frame of age (the face moves
    # while no detector result is fresh), up to face_max_growth.
    face_growth_per_frame: float = 0.06
    face_max_growth: float = 1.0

    def __post_init__(self) -> None:
        _positive(self, "head_box_per_head_length", "head_box_per_shoulder_width",
                  "min_head_box_per_shoulder_width", "face_detector_every_frames", "face_detector_max_side_px",
                  "face_detector_background_every_frames", "face_detector_threads",
                  "face_detector_background_threads", "face_detector_max_age_frames")
        _non_negative(self, "face_detector_margin", "head_box_memory_frames", "face_hold_frames", "face_hold_runs",
                      "face_growth_per_frame", "face_max_growth")
        if not 0.0 < self.face_detector_threshold < 1.0:
            raise ValueError(f"anonymize.face_detector_threshold must be in (0, 1), got {self.face_detector_threshold}")
        for name in ("blocks_across_box", "blocks_across_frame"):
            if getattr(self, name) < 1:
                raise ValueError(f"anonymize.{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class AngleSettings:
    """Which joint angles are trusted from one frame to the next."""

    # No human joint turns faster than this (knee extension in a sprint peaks near 1000 deg/s); an angle that
    # would have to is a misplaced joint, reported as unknown rather than smoothed into the series.
    max_speed_deg_s: float = 1000.0
    # Frame-to-frame noise of a correct estimate, allowed on top of the speed limit.
    jump_tolerance_deg: float = 15.0
    gate_jumps: bool = True
    # No knee, hip or elbow flexes further than this (about 150-160 deg at the knee, with the calf against the
    # thigh); a larger flexion is a misplaced joint (an ankle put on the hip), reported as unknown.
    max_flexion_deg: float = 165.0

    def __post_init__(self) -> None:
        _positive(self, "max_speed_deg_s", "max_flexion_deg")
        _non_negative(self, "jump_tolerance_deg")


@dataclass(frozen=True)
class DrawSettings:
    enabled: bool = True
    draw_angles: bool = True
    draw_panel: bool = True
    # Unreliable joints are drawn as hollow grey rings (so the user sees the model is unsure) or not at all.
    draw_unreliable: bool = True


@dataclass(frozen=True)
class RuntimeSettings:
    smoothing: SmoothingSettings = field(default_factory=SmoothingSettings)
    scores: ScoreSettings = field(default_factory=ScoreSettings)
    roi: RoiSettings = field(default_factory=RoiSettings)
    anonymize: AnonymizeSettings = field(default_factory=AnonymizeSettings)
    angles: AngleSettings = field(default_factory=AngleSettings)
    draw: DrawSettings = field(default_factory=DrawSettings)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "RuntimeSettings":
        """Settings from a nested mapping (e.g. parsed YAML); missing keys keep their defaults."""
        return from_dict(cls, dict(data or {}), "settings")

    @classmethod
    def from_yaml(cls, path: str | Path) -> "RuntimeSettings":
        return cls.from_dict(read_yaml_mapping(path, "settings file"))

    def with_overrides(self, **sections: Mapping[str, Any]) -> "RuntimeSettings":
        """A copy with some fields changed, e.g. ``with_overrides(anonymize={"enabled": False})``."""
        merged = self.to_dict()
        for section, values in sections.items():
            if section not in merged:
                raise ValueError(f"unknown settings section {section!r}; known: {', '.join(merged)}")
            merged[section] = {**merged[section], **dict(values)}
        return RuntimeSettings.from_dict(merged)


def _positive(obj, *names: str) -> None:
    for name in names:
        if not getattr(obj, name) > 0:
            raise ValueError(f"{type(obj).__name__}.{name} must be > 0, got {getattr(obj, name)}")


def _non_negative(obj, *names: str) -> None:
    for name in names:
        if not getattr(obj, name) >= 0:
            raise ValueError(f"{type(obj).__name__}.{name} must be >= 0, got {getattr(obj, name)}")


def _unit_interval(obj, *names: str) -> None:
    for name in names:
        if not 0.0 <= getattr(obj, name) <= 1.0:
            raise ValueError(f"{type(obj).__name__}.{name} must be in [0, 1], got {getattr(obj, name)}")

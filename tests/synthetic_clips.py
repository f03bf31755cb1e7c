"""Generated video clips for tests and demos: a person-like figure doing squats, written from scratch.

The real sample clips come from PyPI packages at set-up (``rehab.samples``); these clips need nothing but
PyAV, so a test can make exactly the format it needs (VP9, 4K, a portrait phone clip whose pixels are stored
sideways with a display rotation, a video with no frames) in a temporary folder in well under a second.

The figure is drawn from a tiny kinematic model: ankles fixed on the floor, the knees bending from straight to
``max_knee_flexion_deg`` and back once per ``squat_period_s``, the trunk leaning forward as it goes down and the
arms rising to the front. It is person-like (head, trunk, limbs of plausible proportions), not photographic;
pass ``background_bgr`` (e.g. a photo) for a busier scene.

    python -m tests.synthetic_clips OUT.mp4 [--seconds 4] [--size 640x480] [--codec h264|vp9] [--rotation 90]
"""

from __future__ import annotations

import argparse
import logging
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from rehab.runtime.video import rotate_upright

logger = logging.getLogger(__name__)

# FFmpeg encoder names and the options that keep them quick on a busy CPU (tests encode, not archive).
CODECS: dict[str, tuple[str, dict[str, str]]] = {
    "h264": ("libx264", {"preset": "ultrafast", "crf": "23"}),
    "vp9": ("libvpx-vp9", {"deadline": "realtime", "cpu-used": "8", "crf": "40", "b": "0"}),
}
# Body segment lengths as fractions of the figure's standing height (roughly anthropometric).
HEAD_RADIUS = 0.06
NECK_TO_HIP = 0.30
THIGH = 0.245
SHANK = 0.245
UPPER_ARM = 0.17
FOREARM = 0.15
SHOULDER_HALF_WIDTH = 0.10
HIP_HALF_WIDTH = 0.06
LIMB_THICKNESS = 0.045
SKIN_BGR = (120, 160, 215)
SHIRT_BGR = (160, 90, 40)
TROUSERS_BGR = (60, 60, 60)
FLOOR_BGR = (70, 110, 90)


@dataclass(frozen=True)
class ClipSpec:
    width: int = 320
    height: int = 240
    fps: float = 30.0
    seconds: float = 2.0
    codec: str = "h264"
    # Display rotation (counter-clockwise degrees, as phones store it): the pixels are written turned the other
    # way, so a reader that honours the rotation shows the figure upright at width x height.
    rotation_deg: int = 0
    squat_period_s: float = 2.0
    max_knee_flexion_deg: float = 90.0

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ValueError(f"codec must be one of {', '.join(CODECS)}, got {self.codec!r}")
        if self.width < 16 or self.height < 16 or self.width % 2 or self.height % 2:
            raise ValueError(f"width and height must be even and >= 16 (yuv420p), got {self.width}x{self.height}")
        if not (self.fps > 0 and self.seconds >= 0 and self.squat_period_s > 0):
            raise ValueError(f"fps and squat_period_s must be > 0 and seconds >= 0, got {self}")
        if self.rotation_deg % 90:
            raise ValueError(f"rotation_deg must be a multiple of 90, got {self.rotation_deg}")

    @property
    def frame_count(self) -> int:
        return round(self.seconds * self.fps)


def knee_flexion_at(t_s: float, spec: ClipSpec) -> float:
    """The figure's knee flexion in degrees at time ``t_s``: 0 (standing) -> max -> 0 once per period."""
    phase = 0.5 - 0.5 * math.cos(2.0 * math.pi * t_s / spec.squat_period_s)
    return phase * spec.max_knee_flexion_deg


def figure_joints(knee_flexion_deg: float, height_px: float, foot_xy: tuple[float, float]) -> dict[str, np.ndarray]:
    """Image positions of the figure's joints (facing the camera, seen slightly from the side)."""
    flex = math.radians(knee_flexion_deg)
    # Shank leans forward and thigh back by half the flexion each, so the hips stay over the feet.
    shank_dir = np.array([math.sin(flex / 2), -math.cos(flex / 2)])
    thigh_dir = np.array([-math.sin(flex / 2), -math.cos(flex / 2)])
    trunk_lean = flex * 0.4
    trunk_dir = np.array([math.sin(trunk_lean), -math.cos(trunk_lean)])
    arm_raise = flex * 0.9
    arm_dir = np.array([math.sin(arm_raise), math.cos(arm_raise)])
    h = height_px
    joints: dict[str, np.ndarray] = {}
    for side, sign in (("left", 1.0), ("right", -1.0)):
        # The person's left is the image's right when they face the camera.
        ankle = np.array(foot_xy) + np.array([sign * HIP_HALF_WIDTH * h, 0.0])
        knee = ankle + shank_dir * SHANK * h
        hip = knee + thigh_dir * THIGH * h
        joints[f"{side}_ankle"], joints[f"{side}_knee"], joints[f"{side}_hip"] = ankle, knee, hip
    pelvis = (joints["left_hip"] + joints["right_hip"]) / 2
    neck = pelvis + trunk_dir * NECK_TO_HIP * h
    joints["pelvis"], joints["neck"] = pelvis, neck
    joints["head"] = neck + trunk_dir * HEAD_RADIUS * 1.6 * h
    for side, sign in (("left", 1.0), ("right", -1.0)):
        shoulder = neck + np.array([sign * SHOULDER_HALF_WIDTH * h, 0.02 * h])
        elbow = shoulder + arm_dir * UPPER_ARM * h
        wrist = elbow + (arm_dir + np.array([0.0, -0.6])) / np.linalg.norm(arm_dir + np.array([0.0, -0.6])) * FOREARM * h
        joints[f"{side}_shoulder"], joints[f"{side}_elbow"], joints[f"{side}_wrist"] = shoulder, elbow, wrist
    return joints


def _pt(p: np.ndarray) -> tuple[int, int]:
    return round(p[0]), round(p[1])


def draw_figure(canvas_bgr: np.ndarray, joints: dict[str, np.ndarray], height_px: float) -> None:
    thick = max(2, round(LIMB_THICKNESS * height_px))
    for side in ("left", "right"):
        for a, b in (("ankle", "knee"), ("knee", "hip")):
            cv2.line(canvas_bgr, _pt(joints[f"{side}_{a}"]), _pt(joints[f"{side}_{b}"]), TROUSERS_BGR, thick, cv2.LINE_AA)
    torso = np.array([joints["left_shoulder"], joints["right_shoulder"], joints["right_hip"], joints["left_hip"]])
    cv2.fillConvexPoly(canvas_bgr, np.round(torso).astype(np.int32), SHIRT_BGR, cv2.LINE_AA)
    cv2.line(canvas_bgr, _pt(joints["neck"]), _pt(joints["head"]), SKIN_BGR, thick, cv2.LINE_AA)
    cv2.circle(canvas_bgr, _pt(joints["head"]), round(HEAD_RADIUS * height_px), SKIN_BGR, -1, cv2.LINE_AA)
    for side in ("left", "right"):
        cv2.line(canvas_bgr, _pt(joints[f"{side}_shoulder"]), _pt(joints[f"{side}_elbow"]), SHIRT_BGR, thick, cv2.LINE_AA)
        cv2.line(canvas_bgr, _pt(joints[f"{side}_elbow"]), _pt(joints[f"{side}_wrist"]), SKIN_BGR, thick, cv2.LINE_AA)


def _background(spec: ClipSpec, background_bgr: np.ndarray | None) -> np.ndarray:
    if background_bgr is not None:
        return cv2.resize(background_bgr, (spec.width, spec.height), interpolation=cv2.INTER_AREA)
    # A vertical gradient wall and a floor: texture enough for the encoder and the pose model to see edges.
    wall = np.linspace(200, 150, spec.height, dtype=np.float32)[:, None, None] * np.ones((1, spec.width, 3), np.float32)
    img = wall.astype(np.uint8)
    img[int(spec.height * 0.85):] = FLOOR_BGR
    return img


def render_frame(t_s: float, spec: ClipSpec, background_bgr: np.ndarray | None = None) -> np.ndarray:
    """The upright frame at ``t_s`` (height x width x 3 BGR)."""
    img = _background(spec, background_bgr).copy()
    figure_h = 0.8 * spec.height
    draw_figure(img, figure_joints(knee_flexion_at(t_s, spec), figure_h, (spec.width / 2, 0.9 * spec.height)), figure_h)
    return img


def write_clip(path: str | Path, spec: ClipSpec = ClipSpec(), background_bgr: np.ndarray | None = None) -> Path:
    """Write the clip described by ``spec`` to ``path`` (.mp4, .webm, .mkv); ``spec.seconds == 0`` with .mp4
    gives a valid container with a video stream and no frames."""
    import av

    path = Path(path)
    encoder, options = CODECS[spec.codec]
    stored_w, stored_h = (spec.height, spec.width) if (spec.rotation_deg // 90) % 2 else (spec.width, spec.height)
    # MP4 drops a track that received no packets; a fragmented MP4 declares its track up front, so a
    # zero-frame clip still has a (frameless) video stream, as a recorder stopped at once would leave.
    # Otherwise the index goes first ("faststart"), as in files made for streaming: a copy cut short then
    # still opens and shows how many frames are missing.
    is_mp4 = path.suffix.lower() in (".mp4", ".m4v", ".mov")
    options = ({"movflags": "frag_keyframe+empty_moov"} if spec.frame_count == 0 else {"movflags": "+faststart"}) if is_mp4 else {}
    with av.open(str(path), mode="w", options=options) as container:
        stream = container.add_stream(encoder, rate=Fraction(spec.fps).limit_denominator(1001))
        stream.width, stream.height = stored_w, stored_h
        stream.pix_fmt = "yuv420p"
        stream.options = dict(options)
        if spec.rotation_deg:
            stream.set_display_rotation(spec.rotation_deg)
        # The header is otherwise written with the first packet: a zero-frame clip needs it written explicitly.
        container.start_encoding()
        for i in range(spec.frame_count):
            upright = render_frame(i / spec.fps, spec, background_bgr)
            # Stored turned back by the display rotation, as a phone held sideways records it.
            stored = rotate_upright(upright, -spec.rotation_deg)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(stored), format="bgr24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    logger.info("wrote %s: %dx%d, %d frames, %s, rotation %d", path, spec.width, spec.height, spec.frame_count,
                spec.codec, spec.rotation_deg)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("output", type=Path)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--size", default="640x480", help="WIDTHxHEIGHT as displayed")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--codec", choices=sorted(CODECS), default="h264")
    p.add_argument("--rotation", type=int, default=0, help="display rotation in degrees (phone clips: 90 or -90)")
    p.add_argument("--background", type=Path, default=None, help="an image to put behind the figure")
    args = p.parse_args(argv)
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        p.error(f"--size must look like 640x480, got {args.size!r}")
    background = None
    if args.background is not None:
        background = cv2.imread(str(args.background), cv2.IMREAD_COLOR)
        if background is None:
            p.error(f"--background {args.background} is not a readable image")
    spec = ClipSpec(width=width, height=height, fps=args.fps, seconds=args.seconds, codec=args.codec,
                    rotation_deg=args.rotation)
    write_clip(args.output, spec, background)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    raise SystemExit(main())

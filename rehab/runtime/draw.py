"""Drawing on frames: skeleton, angle values at the joints and a repetition panel.

Line widths and fonts scale with the frame height (designed at 720 px), so 480p and 1080p read alike.
Colours say how sure the model is: confident joints and limbs go from red (at the reliability threshold)
through yellow to green (score 1); unreliable ones are thin grey rings and lines, or left out.
Drawing measures and counts nothing: every number and every line of text drawn is passed in (the pipeline
composes the overlay from the analysis results, so drawing knows pixels, not exercises).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import cv2
import numpy as np

from rehab.core.angles import ANGLES_BY_NAME, get_angle
from rehab.core.skeleton import JointSet

REFERENCE_HEIGHT_PX = 720.0
FONT = cv2.FONT_HERSHEY_SIMPLEX
GREY = (150, 150, 150)
WHITE = (255, 255, 255)
PANEL_ALPHA = 0.45  # how much of the frame shows through the panel background
# Angles drawn when no exercise names its own.
DEFAULT_ANGLES = ("left_knee_flexion", "right_knee_flexion", "left_hip_flexion", "right_hip_flexion",
                  "left_elbow_flexion", "right_elbow_flexion")


@dataclass(frozen=True)
class DrawStyle:
    line_px: int
    joint_radius_px: int
    font_scale: float
    text_px: int
    margin_px: int

    @staticmethod
    def for_height(height_px: int) -> "DrawStyle":
        k = height_px / REFERENCE_HEIGHT_PX
        return DrawStyle(
            line_px=max(1, round(3 * k)),
            joint_radius_px=max(2, round(5 * k)),
            # Hershey fonts below ~0.45 blur into the video at 480p.
            font_scale=max(0.45, 0.7 * k),
            text_px=max(1, round(2 * k)),
            margin_px=max(4, round(10 * k)),
        )


def score_colour(score: float, min_score: float) -> tuple[int, int, int]:
    """BGR colour from red (score at the threshold) through yellow to green (score 1)."""
    if not math.isfinite(score):
        return GREY
    f = float(np.clip((score - min_score) / max(1.0 - min_score, 1e-6), 0.0, 1.0))
    if f < 0.5:
        return (0, int(round(255 * 2 * f)), 255)
    return (0, 255 - int(round(55 * (2 * f - 1))), int(round(255 * (2 - 2 * f))))


def put_text(img: np.ndarray, text: str, org: tuple[int, int], style: DrawStyle, colour=WHITE,
             scale: float = 1.0, background: bool = False) -> tuple[int, int]:
    """Text with "°" drawn as a small ring (Hershey fonts have no degree sign); returns its (w, h)."""
    font_scale = style.font_scale * scale
    thickness = max(1, round(style.text_px * scale))
    pieces = text.split("°")
    sizes = [cv2.getTextSize(p, FONT, font_scale, thickness)[0] for p in pieces]
    (_, base_h), baseline = cv2.getTextSize("0", FONT, font_scale, thickness)
    ring_r = max(1, round(base_h / 5))
    total_w = sum(s[0] for s in sizes) + (len(pieces) - 1) * (3 * ring_r + thickness)
    x, y = org
    if background:
        pad = max(2, style.margin_px // 3)
        x1, y1 = max(x - pad, 0), max(y - base_h - pad, 0)
        x2, y2 = min(x + total_w + pad, img.shape[1]), min(y + baseline + pad, img.shape[0])
        if x2 > x1 and y2 > y1:
            img[y1:y2, x1:x2] = (img[y1:y2, x1:x2] * PANEL_ALPHA).astype(img.dtype)
    for i, (piece, size) in enumerate(zip(pieces, sizes)):
        cv2.putText(img, piece, (x, y), FONT, font_scale, colour, thickness, cv2.LINE_AA)
        x += size[0]
        if i < len(pieces) - 1:
            cv2.circle(img, (x + ring_r + thickness, y - base_h + ring_r), ring_r, colour, thickness, cv2.LINE_AA)
            x += 3 * ring_r + thickness
    return total_w, base_h + baseline


def _pt(p) -> tuple[int, int]:
    return (int(round(float(p[0]))), int(round(float(p[1]))))


def draw_skeleton(img: np.ndarray, keypoints_px: np.ndarray, scores: np.ndarray, reliable: np.ndarray,
                  joint_set: JointSet, style: DrawStyle, min_score: float, draw_unreliable: bool = True) -> None:
    kp = np.asarray(keypoints_px, dtype=np.float64)
    finite = np.isfinite(kp).all(-1)
    for a, b in joint_set.limb_indices:
        if not (finite[a] and finite[b]):
            continue
        if reliable[a] and reliable[b]:
            colour = score_colour(min(scores[a], scores[b]), min_score)
            cv2.line(img, _pt(kp[a]), _pt(kp[b]), colour, style.line_px, cv2.LINE_AA)
        elif draw_unreliable:
            cv2.line(img, _pt(kp[a]), _pt(kp[b]), GREY, max(1, style.line_px // 2), cv2.LINE_AA)
    for j in range(joint_set.num_joints):
        if not finite[j]:
            continue
        if reliable[j]:
            cv2.circle(img, _pt(kp[j]), style.joint_radius_px, score_colour(scores[j], min_score), -1, cv2.LINE_AA)
            cv2.circle(img, _pt(kp[j]), style.joint_radius_px, WHITE, max(1, style.line_px // 3), cv2.LINE_AA)
        elif draw_unreliable:
            cv2.circle(img, _pt(kp[j]), style.joint_radius_px, GREY, max(1, style.line_px // 2), cv2.LINE_AA)


def angle_anchor(angle_name: str, keypoints_px: np.ndarray, joint_names: Sequence[str]) -> np.ndarray | None:
    """Where an angle's value is written: its vertex joint (or the moving end of an inclination)."""
    defn = get_angle(angle_name)
    point = defn.a if defn.kind == "vertical" else defn.b
    names = tuple(joint_names)
    if not all(j in names for j in point):
        return None
    return np.mean([keypoints_px[names.index(j)] for j in point], axis=0)


def draw_angles(img: np.ndarray, angles_deg: Mapping[str, float], keypoints_px: np.ndarray, reliable: np.ndarray,
                joint_names: Sequence[str], style: DrawStyle, names: Sequence[str]) -> None:
    kp = np.asarray(keypoints_px, dtype=np.float64)
    if reliable.any():
        centre = kp[reliable].mean(0)
    else:
        return
    for name in names:
        value = angles_deg.get(name, math.nan)
        if name not in ANGLES_BY_NAME or not math.isfinite(value):
            continue
        anchor = angle_anchor(name, kp, joint_names)
        if anchor is None or not np.isfinite(anchor).all():
            continue
        # Write the value outward, away from the body, so it does not cover the limb.
        away = anchor - centre
        norm = float(np.hypot(*away))
        direction = away / norm if norm > 1e-6 else np.array([1.0, 0.0])
        offset = direction * 3 * style.joint_radius_px
        org = anchor + offset
        text = f"{value:.0f}°"
        (tw, _), _ = cv2.getTextSize(text, FONT, style.font_scale, style.text_px)
        if direction[0] < 0:
            org[0] -= tw  # labels on the left of the body end at the offset point
        put_text(img, text, _pt(org), style, background=True)


def draw_panel(img: np.ndarray, lines: Sequence[str], style: DrawStyle) -> None:
    """Lines of text top-left on a darkened panel; the second line (the count) is drawn larger."""
    if not lines:
        return
    scales = [1.0 if i != 1 else 1.6 for i in range(len(lines))]
    sizes = []
    for line, s in zip(lines, scales):
        pieces = line.replace("°", "  ")
        (w, h), base = cv2.getTextSize(pieces, FONT, style.font_scale * s, max(1, round(style.text_px * s)))
        sizes.append((w, h + base))
    m = style.margin_px
    width = max(w for w, _ in sizes) + 2 * m
    height = sum(h for _, h in sizes) + (len(lines) + 1) * m // 2 + m
    x2, y2 = min(width + m, img.shape[1]), min(height + m, img.shape[0])
    img[m:y2, m:x2] = (img[m:y2, m:x2] * PANEL_ALPHA).astype(img.dtype)
    y = m + m // 2
    for line, s, (_, h) in zip(lines, scales, sizes):
        y += h
        put_text(img, line, (2 * m, y), style, scale=s)
        y += m // 2


def draw_frame(img: np.ndarray, *, keypoints_px: np.ndarray | None, scores: np.ndarray | None,
               reliable: np.ndarray | None, joint_set: JointSet, angles_deg: Mapping[str, float], min_score: float,
               angle_names: Sequence[str] | None = None, panel: Sequence[str] = (), draw_angle_values: bool = True,
               draw_unreliable: bool = True) -> np.ndarray:
    """Draw onto ``img`` in place and return it.

    ``angle_names`` are the angles written at their joints (None: DEFAULT_ANGLES); ``panel`` the lines of
    the top-left panel (nothing drawn when empty).
    """
    style = DrawStyle.for_height(img.shape[0])
    if keypoints_px is not None and scores is not None and reliable is not None:
        draw_skeleton(img, keypoints_px, scores, reliable, joint_set, style, min_score, draw_unreliable)
        if draw_angle_values:
            names = DEFAULT_ANGLES if angle_names is None else angle_names
            draw_angles(img, angles_deg, keypoints_px, reliable, joint_set.joints, style, names)
    draw_panel(img, panel, style)
    return img

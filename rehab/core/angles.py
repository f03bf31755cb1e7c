"""Joint angles in degrees, defined over joint names.

Image coordinates have y pointing down, so "vertical" is the image's y axis. Every angle is NaN when a
joint it needs is missing from the model's joint set, not finite, or scored below the threshold: an
unreliable angle is reported as unknown, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rehab.core.validate import as_points

# A point of an angle definition: one joint, or the midpoint of several (e.g. mid-hip).
Point = tuple[str, ...]


def angle_deg(a, b, c) -> np.ndarray:
    """The angle ABC at vertex B in degrees, in [0, 180]; arrays of shape (..., 2)."""
    a, b, c = (as_points(np.asarray(p, dtype=np.float64)[..., None, :], n)[..., 0, :] for p, n in ((a, "a"), (b, "b"), (c, "c")))
    v1, v2 = a - b, c - b
    cross = v1[..., 0] * v2[..., 1] - v1[..., 1] * v2[..., 0]
    dot = (v1 * v2).sum(-1)
    out = np.degrees(np.abs(np.arctan2(cross, dot)))
    degenerate = (np.hypot(*np.moveaxis(v1, -1, 0)) == 0) | (np.hypot(*np.moveaxis(v2, -1, 0)) == 0)
    return np.where(degenerate, np.nan, out)


def inclination_deg(start, end) -> np.ndarray:
    """Angle in degrees between the segment start->end and the upward vertical (0 = pointing straight up)."""
    start = np.asarray(start, dtype=np.float64)
    end = np.asarray(end, dtype=np.float64)
    up = start + np.array([0.0, -1.0])
    return angle_deg(up, start, end)


@dataclass(frozen=True)
class AngleDef:
    """``kind`` is "flexion" (180 - angle ABC: 0 = straight limb), "included" (angle ABC), or "vertical"
    (inclination of the segment A->B from upward vertical; ``c`` unused)."""

    name: str
    kind: str
    a: Point
    b: Point
    c: Point = ()
    description: str = ""

    def joints(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.a + self.b + self.c))


def _sided(side: str) -> list[AngleDef]:
    s = side
    return [
        AngleDef(f"{s}_knee_flexion", "flexion", (f"{s}_hip",), (f"{s}_knee",), (f"{s}_ankle",),
                 "0 deg with the leg straight, growing as the knee bends"),
        AngleDef(f"{s}_hip_flexion", "flexion", (f"{s}_shoulder",), (f"{s}_hip",), (f"{s}_knee",),
                 "0 deg with trunk and thigh in line, growing as the hip bends"),
        AngleDef(f"{s}_elbow_flexion", "flexion", (f"{s}_shoulder",), (f"{s}_elbow",), (f"{s}_wrist",),
                 "0 deg with the arm straight, growing as the elbow bends"),
        AngleDef(f"{s}_shoulder_abduction", "included", (f"{s}_hip",), (f"{s}_shoulder",), (f"{s}_elbow",),
                 "angle between trunk side and upper arm in the image plane: 0 deg arm down, 90 deg horizontal; "
                 "abduction seen from the front, flexion seen from the side"),
        AngleDef(f"{s}_ankle", "vertical", (f"{s}_ankle",), (f"{s}_knee",), (),
                 "shank inclination from vertical (the joint sets have no foot point, so the tibia's forward "
                 "lean stands in for ankle dorsiflexion)"),
    ]


ANGLES: tuple[AngleDef, ...] = tuple(d for side in ("left", "right") for d in _sided(side)) + (
    AngleDef("trunk_lean", "vertical", ("left_hip", "right_hip"), ("left_shoulder", "right_shoulder"), (),
             "inclination of mid-hip -> mid-shoulder from upward vertical"),
)
ANGLES_BY_NAME: dict[str, AngleDef] = {d.name: d for d in ANGLES}


def get_angle(name: str) -> AngleDef:
    try:
        return ANGLES_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown angle {name!r}; known: {', '.join(ANGLES_BY_NAME)}") from None


def _point(keypoints: np.ndarray, reliable: np.ndarray, names: tuple[str, ...], point: Point) -> np.ndarray:
    if not all(j in names for j in point):
        return np.full(keypoints.shape[:-2] + (2,), np.nan)
    idx = [names.index(j) for j in point]
    pts = keypoints[..., idx, :]
    ok = reliable[..., idx].all(-1)
    return np.where(ok[..., None], pts.mean(-2), np.nan)


def compute_angle(defn: AngleDef, keypoints, joint_names, scores=None, min_score: float = 0.0) -> np.ndarray:
    """One angle over (..., K, 2) keypoints; NaN where a needed joint is missing or below ``min_score``."""
    names = tuple(joint_names)
    kp = as_points(keypoints, "keypoints", len(names))
    reliable = np.isfinite(kp).all(-1)
    if scores is not None:
        sc = np.asarray(scores, dtype=np.float64)
        if sc.shape != kp.shape[:-1]:
            raise ValueError(f"scores must have shape {kp.shape[:-1]}, got {sc.shape}")
        reliable &= sc >= min_score
    a = _point(kp, reliable, names, defn.a)
    b = _point(kp, reliable, names, defn.b)
    if defn.kind == "vertical":
        return inclination_deg(a, b)
    c = _point(kp, reliable, names, defn.c)
    angle = angle_deg(a, b, c)
    if defn.kind == "flexion":
        return 180.0 - angle
    if defn.kind == "included":
        return angle
    raise ValueError(f"angle {defn.name!r} has unknown kind {defn.kind!r}")


def joint_angles(keypoints, joint_names, scores=None, min_score: float = 0.0, names=None) -> dict[str, np.ndarray]:
    """All named angles (or those in ``names``) as a dict name -> array of shape keypoints.shape[:-2]."""
    defs = ANGLES if names is None else tuple(get_angle(n) for n in names)
    return {d.name: compute_angle(d, keypoints, joint_names, scores, min_score) for d in defs}

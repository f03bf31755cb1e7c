"""Person boxes as center/scale, and the affine maps between an image and a network crop.

A scale of 1.0 is a box 200 px tall, the MPII convention (``scale_provided`` is person height / 200 px).
Scales are (width, height) pairs in that unit. Points are (x, y) pixel coordinates, y downwards.
"""

from __future__ import annotations

import numpy as np

from rehab.core.validate import as_points

SCALE_UNIT_PX = 200.0
# Simple Baselines enlarges a person box by 25% so that limbs at its edge stay inside the crop. Training makes
# it configurable and export stores the value in the model; this is the default of both and of older models.
DEFAULT_BOX_PADDING = 1.25


def box_to_center_scale(box_xyxy, aspect_ratio: float,
                        padding: float = DEFAULT_BOX_PADDING) -> tuple[np.ndarray, np.ndarray]:
    """Center and (w, h) scale of a box, widened to ``aspect_ratio`` (w / h) and padded by ``padding``."""
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    if not (x2 > x1 and y2 > y1) or not np.isfinite([x1, y1, x2, y2]).all():
        raise ValueError(f"box_xyxy must be finite with x2 > x1 and y2 > y1, got {box_xyxy}")
    w, h = x2 - x1, y2 - y1
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    else:
        w = h * aspect_ratio
    center = np.array([(x1 + x2) / 2.0, (y1 + y2) / 2.0])
    scale = np.array([w, h]) * padding / SCALE_UNIT_PX
    return center, scale


def keypoints_box(keypoints, visible, margin: float = 0.15) -> np.ndarray | None:
    """Box (x1, y1, x2, y2) around the visible keypoints, grown by ``margin`` of its size per side."""
    kp = as_points(keypoints, "keypoints")
    vis = np.asarray(visible, dtype=bool) & np.isfinite(kp).all(-1)
    if vis.sum() < 2:
        return None
    pts = kp[vis]
    lo, hi = pts.min(0), pts.max(0)
    size = np.maximum(hi - lo, 1.0)
    lo, hi = lo - margin * size, hi + margin * size
    return np.array([lo[0], lo[1], hi[0], hi[1]])


def affine_matrix(center, scale, rot_deg: float, output_size) -> np.ndarray:
    """2x3 matrix mapping image pixels into an ``output_size`` (w, h) crop of the box center/scale.

    The box width (scale[0] * 200 px) fills the output width; positive ``rot_deg`` turns the person
    counter-clockwise in the crop, the sense of OpenCV's getRotationMatrix2D.
    """
    center = np.asarray(center, dtype=np.float64).reshape(2)
    scale = np.asarray(scale, dtype=np.float64).reshape(-1)
    out_w, out_h = (float(v) for v in output_size)
    box_w = float(scale[0]) * SCALE_UNIT_PX
    if not box_w > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    s = out_w / box_w
    theta = np.deg2rad(rot_deg)
    c, si = np.cos(theta) * s, np.sin(theta) * s
    linear = np.array([[c, si], [-si, c]])
    offset = np.array([out_w / 2.0, out_h / 2.0]) - linear @ center
    return np.hstack([linear, offset[:, None]])


def invert_affine(matrix) -> np.ndarray:
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (2, 3):
        raise ValueError(f"matrix must have shape (2, 3), got {m.shape}")
    linear_inv = np.linalg.inv(m[:, :2])
    return np.hstack([linear_inv, (-linear_inv @ m[:, 2])[:, None]])


def apply_affine(points, matrix) -> np.ndarray:
    """Apply a 2x3 matrix to points of shape (..., 2); NaN points stay NaN."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.shape[-1:] != (2,):
        raise ValueError(f"points must have shape (..., 2), got {pts.shape}")
    m = np.asarray(matrix, dtype=np.float64)
    return pts @ m[:, :2].T + m[:, 2]


def crop_points(points, center, scale, rot_deg: float, output_size) -> np.ndarray:
    return apply_affine(points, affine_matrix(center, scale, rot_deg, output_size))


def uncrop_points(points, center, scale, rot_deg: float, output_size) -> np.ndarray:
    return apply_affine(points, invert_affine(affine_matrix(center, scale, rot_deg, output_size)))


def flip_points(points, width: float, flip_permutation) -> np.ndarray:
    """Mirror (..., K, 2) points in an image ``width`` pixels wide and swap left/right joints.

    Pixel x is the centre of column x, so column 0 maps to column width - 1.
    """
    pts = np.array(points, dtype=np.float64)
    pts[..., 0] = (width - 1) - pts[..., 0]
    return pts[..., np.asarray(flip_permutation), :]


def letterbox(image_size, output_size) -> tuple[np.ndarray, np.ndarray]:
    """Center/scale that fits a whole (w, h) image into an ``output_size`` crop, padding the short side."""
    w, h = (float(v) for v in image_size)
    return box_to_center_scale((0.0, 0.0, w, h), aspect_ratio=output_size[0] / output_size[1], padding=1.0)

"""The heatmap codec: Gaussian targets for training, argmax decoding for inference, flip-test merging.

Heatmap pixel (i, j) covers input pixels around (j * stride, i * stride): a keypoint at input pixel p sits at
heatmap coordinate p / stride, and a decoded heatmap coordinate c maps back to c * stride. Encoding and
decoding share this one convention, so the round trip is unbiased.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rehab.core.validate import as_heatmaps, as_points

DEFAULT_SIGMA = 2.0
# Simple Baselines moves the argmax a quarter pixel toward the higher neighbour to undo part of the
# quantisation error of an integer argmax.
SUBPIXEL_SHIFT = 0.25
# A Gaussian further than this many sigmas outside the heatmap leaves no trace in it: weight 0.
_OUTSIDE_SIGMAS = 3.0


@dataclass(frozen=True)
class HeatmapSpec:
    """How a network's heatmaps relate to its input: (w, h) sizes and the stride between them."""

    input_size: tuple[int, int]
    heatmap_size: tuple[int, int]
    sigma: float = DEFAULT_SIGMA

    @property
    def stride(self) -> float:
        return self.input_size[0] / self.heatmap_size[0]


def encode(keypoints_px, visible, heatmap_size, stride: float, sigma: float = DEFAULT_SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian targets (K, H, W) float32 and target weights (K,) float32 for one person.

    ``keypoints_px`` (K, 2) are in input-crop pixels. A joint gets weight 0 when it is not visible
    (not annotated) or lies so far outside the crop that its Gaussian has no mass inside.
    """
    kp = as_points(keypoints_px, "keypoints_px")
    if kp.ndim != 2:
        raise ValueError(f"keypoints_px must have shape (K, 2), got {kp.shape}")
    vis = np.asarray(visible)
    if vis.shape != kp.shape[:1]:
        raise ValueError(f"visible must have shape ({kp.shape[0]},), got {vis.shape}")
    w, h = (int(v) for v in heatmap_size)
    if not (stride > 0 and sigma > 0):
        raise ValueError(f"stride and sigma must be positive, got stride={stride}, sigma={sigma}")
    centers = kp / stride
    weights = (vis > 0) & np.isfinite(centers).all(1)
    margin = _OUTSIDE_SIGMAS * sigma
    safe = np.where(np.isfinite(centers), centers, 0.0)
    inside = (safe[:, 0] > -margin) & (safe[:, 0] < w - 1 + margin) & (safe[:, 1] > -margin) & (safe[:, 1] < h - 1 + margin)
    weights &= inside
    xs = np.arange(w, dtype=np.float64)
    ys = np.arange(h, dtype=np.float64)
    # Separable Gaussian: exp(-(dx^2 + dy^2) / 2s^2) = gx * gy.
    gx = np.exp(-((xs[None, :] - safe[:, :1]) ** 2) / (2 * sigma**2))
    gy = np.exp(-((ys[None, :] - safe[:, 1:]) ** 2) / (2 * sigma**2))
    targets = (gy[:, :, None] * gx[:, None, :]).astype(np.float32)
    targets[~weights] = 0.0
    return targets, weights.astype(np.float32)


def decode(heatmaps, stride: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints (N, K, 2) in input pixels and scores (N, K) from heatmaps (N, K, H, W).

    A single (K, H, W) heatmap stack gives (K, 2) and (K,). The score is the heatmap maximum.
    """
    hm, single = as_heatmaps(heatmaps)
    n, k, h, w = hm.shape
    flat = hm.reshape(n, k, h * w)
    idx = flat.argmax(-1)
    scores = np.take_along_axis(flat, idx[..., None], -1)[..., 0].astype(np.float32)
    ys, xs = np.divmod(idx, w)
    coords = np.stack([xs, ys], -1).astype(np.float64)

    def at(y, x):
        return np.take_along_axis(flat, (y * w + x)[..., None], -1)[..., 0]

    # Neighbour differences; at the border the missing neighbour counts as equal (no shift).
    dx = np.where((xs > 0) & (xs < w - 1), at(ys, np.minimum(xs + 1, w - 1)) - at(ys, np.maximum(xs - 1, 0)), 0.0)
    dy = np.where((ys > 0) & (ys < h - 1), at(np.minimum(ys + 1, h - 1), xs) - at(np.maximum(ys - 1, 0), xs), 0.0)
    coords += SUBPIXEL_SHIFT * np.stack([np.sign(dx), np.sign(dy)], -1)
    coords *= stride
    if single:
        return coords[0], scores[0]
    return coords, scores


def flip_heatmaps(heatmaps, flip_permutation) -> np.ndarray:
    """Heatmaps of a mirrored image, mirrored back and with left/right channels swapped."""
    hm, single = as_heatmaps(heatmaps)
    perm = np.asarray(flip_permutation)
    if perm.shape != (hm.shape[1],):
        raise ValueError(f"flip_permutation must have shape ({hm.shape[1]},), got {perm.shape}")
    out = hm[:, perm, :, ::-1]
    return out[0] if single else out


def merge_flip(heatmaps, heatmaps_of_flipped, flip_permutation, shift: bool = True) -> np.ndarray:
    """Average the heatmaps of an image and those of its mirror image (flip test).

    With ``shift``, the flipped-back maps move one pixel right, the Simple Baselines convention that
    compensates for the half-pixel misalignment of mirrored feature maps.
    """
    hm, single = as_heatmaps(heatmaps)
    back, _ = as_heatmaps(flip_heatmaps(heatmaps_of_flipped, flip_permutation), "heatmaps_of_flipped")
    if back.shape != hm.shape:
        raise ValueError(f"heatmaps_of_flipped must have shape {hm.shape}, got {back.shape}")
    if shift:
        back = back.copy()
        back[..., 1:] = back[..., :-1]
    out = (hm + back) / 2.0
    return out[0] if single else out

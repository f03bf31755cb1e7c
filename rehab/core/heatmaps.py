"""The heatmap codec: Gaussian targets for training, argmax decoding for inference, flip-test merging.

Two coordinate conventions ("encodings") relate input pixels to heatmap pixels; encoding and decoding share
the one a model was trained with, so each round trip is unbiased:

- ``standard`` (Simple Baselines): a keypoint at input pixel p sits at heatmap coordinate p / stride with
  stride = input size / heatmap size, and a decoded c maps back to c * stride. Under a horizontal flip the
  mirrored heatmaps land 1 - 1/stride heatmap pixels off, which the flip test's one-pixel shift roughly undoes.
- ``udp`` (unbiased data processing, Huang et al. 2020): sizes are measured in unit lengths (pixels - 1), so
  stride = (input size - 1) / (heatmap size - 1) per axis; the first and last pixel centres of input and
  heatmap coincide, a flip maps heatmap x to (w - 1) - x exactly, and the flip test needs no shift.

Two decodings: ``quarter`` (argmax plus a quarter pixel toward the higher neighbour, Simple Baselines) and
``dark`` (distribution-aware, Zhang et al. 2020: the heatmap is smoothed by a Gaussian of the training sigma,
and a second-order Taylor expansion of its logarithm at the argmax gives the sub-pixel peak).
"""

from __future__ import annotations


import numpy as np

from rehab.core.transforms import apply_affine, invert_affine
from rehab.core.validate import as_heatmaps, as_points

DEFAULT_SIGMA = 2.0
# Simple Baselines moves the argmax a quarter pixel toward the higher neighbour to undo part of the
# quantisation error of an integer argmax.
SUBPIXEL_SHIFT = 0.25
# A Gaussian further than this many sigmas outside the heatmap leaves no trace in it: weight 0.
_OUTSIDE_SIGMAS = 3.0
ENCODINGS = ("standard", "udp")
DECODINGS = ("quarter", "dark")
# DARK takes the logarithm of the smoothed heatmap: values are floored here so that log stays finite.
_DARK_LOG_FLOOR = 1e-10
# The smoothing kernel reaches this many sigmas to each side (11 taps for sigma 2, as DARK's kernel).
_DARK_KERNEL_SIGMAS = 2.5
# A Hessian whose determinant is this small is flat: no Taylor step is taken (argmax kept).
_DARK_MIN_DET = 1e-12
# The Taylor step never moves a peak further than this many heatmap pixels (it is a local correction).
_DARK_MAX_STEP = 1.0


def _check_choice(value: str, choices: tuple[str, ...], what: str) -> None:
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(choices)}, got {value!r}")


def coordinate_stride(input_size, heatmap_size, encoding: str = "standard") -> np.ndarray:
    """Input pixels per heatmap pixel, (sx, sy), of an ``encoding``: input_px = heatmap_px * stride."""
    _check_choice(encoding, ENCODINGS, "heatmap encoding")
    w_in, h_in = (float(v) for v in input_size)
    w_hm, h_hm = (float(v) for v in heatmap_size)
    if min(w_in, h_in, w_hm, h_hm) <= 0:
        raise ValueError(f"input_size and heatmap_size must be positive, got {input_size}, {heatmap_size}")
    if encoding == "standard":
        return np.array([w_in / w_hm, h_in / h_hm])
    if min(w_hm, h_hm) < 2:
        raise ValueError(f"the udp encoding needs heatmaps of at least 2x2 pixels, got {heatmap_size}")
    return np.array([(w_in - 1) / (w_hm - 1), (h_in - 1) / (h_hm - 1)])


def flip_shift(encoding: str) -> bool:
    """Whether the flip test shifts the mirrored heatmaps one pixel (only the standard encoding needs it)."""
    _check_choice(encoding, ENCODINGS, "heatmap encoding")
    return encoding == "standard"


def encode(keypoints_px, visible, heatmap_size, stride, sigma: float = DEFAULT_SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian targets (K, H, W) float32 and target weights (K,) float32 for one person.

    ``keypoints_px`` (K, 2) are in input-crop pixels; ``stride`` is a number or (sx, sy) from
    ``coordinate_stride`` (the encoding). The Gaussian's centre is not rounded to a pixel. A joint gets weight 0
    when it is not visible (not annotated) or lies so far outside the crop that its Gaussian has no mass inside.
    """
    kp = as_points(keypoints_px, "keypoints_px")
    if kp.ndim != 2:
        raise ValueError(f"keypoints_px must have shape (K, 2), got {kp.shape}")
    vis = np.asarray(visible)
    if vis.shape != kp.shape[:1]:
        raise ValueError(f"visible must have shape ({kp.shape[0]},), got {vis.shape}")
    w, h = (int(v) for v in heatmap_size)
    stride = _as_stride(stride)
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
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


def _as_stride(stride) -> np.ndarray:
    """A scalar stride or (sx, sy) as a (2,) array, checked positive."""
    arr = np.broadcast_to(np.asarray(stride, dtype=np.float64), (2,)).copy()
    if not (np.isfinite(arr).all() and (arr > 0).all()):
        raise ValueError(f"stride must be positive, got {stride}")
    return arr


def decode(heatmaps, stride=1.0, method: str = "quarter",
           sigma: float = DEFAULT_SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints (N, K, 2) in input pixels and scores (N, K) from heatmaps (N, K, H, W).

    A single (K, H, W) heatmap stack gives (K, 2) and (K,). The score is the heatmap maximum (of the raw
    heatmap, for both methods). ``stride`` is a number or (sx, sy) from ``coordinate_stride``; ``method`` is
    quarter | dark; ``sigma`` (the training Gaussian's) sets DARK's smoothing.
    """
    _check_choice(method, DECODINGS, "heatmap decoding")
    stride = _as_stride(stride)
    hm, single = as_heatmaps(heatmaps)
    if method == "dark":
        coords, scores = _decode_dark(hm, sigma)
        coords = coords * stride
        return (coords[0], scores[0]) if single else (coords, scores)
    h, w = hm.shape[2:]
    flat, ys, xs, coords, scores = _peaks(hm)

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


def decode_to_image(heatmaps, image_to_crop, input_size, heatmap_size, encoding: str = "standard",
                    method: str = "quarter", sigma: float = DEFAULT_SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints in image pixels and scores of the heatmaps of crops made by ``image_to_crop`` (the 2x3
    image->crop affine of each crop): (K, H, W) with (2, 3) gives (K, 2), (K,); (N, K, H, W) with (N, 2, 3)
    gives (N, K, 2), (N, K). The one way back to the image that training, export and the runtime share."""
    stride = coordinate_stride(input_size, heatmap_size, encoding)
    crop_px, scores = decode(heatmaps, stride=stride, method=method, sigma=sigma)
    matrices = np.asarray(image_to_crop, dtype=np.float64)
    if matrices.ndim == 2:
        return apply_affine(crop_px, invert_affine(matrices)), scores
    if matrices.shape != (len(crop_px), 2, 3):
        raise ValueError(f"image_to_crop must be one (2, 3) matrix per crop, got {matrices.shape} for "
                         f"{len(crop_px)} crops")
    return np.stack([apply_affine(crop_px[i], invert_affine(matrices[i])) for i in range(len(crop_px))]), scores


def _peaks(hm: np.ndarray):
    """Per (N, K) map: the flattened maps, the argmax row and column, its (x, y) as floats and its value."""
    n, k, h, w = hm.shape
    flat = hm.reshape(n, k, h * w)
    idx = flat.argmax(-1)
    scores = np.take_along_axis(flat, idx[..., None], -1)[..., 0].astype(np.float32)
    ys, xs = np.divmod(idx, w)
    return flat, ys, xs, np.stack([xs, ys], -1).astype(np.float64), scores


def _smoothed_neighbourhood(hm: np.ndarray, ys: np.ndarray, xs: np.ndarray, sigma: float) -> np.ndarray:
    """(N, K, 3, 3): the heatmaps smoothed by a Gaussian of ``sigma`` (zero outside the map, as in DARK), at the
    argmax and its 8 neighbours. Only the window that feeds those 9 values is smoothed: the Taylor step needs no
    more, and smoothing whole maps cost ~40x the quarter-offset decoding."""
    n, k = hm.shape[:2]
    radius = max(1, int(np.ceil(_DARK_KERNEL_SIGMAS * sigma)))
    taps = np.exp(-(np.arange(-radius, radius + 1) ** 2) / (2 * sigma**2))
    taps /= taps.sum()
    pad = radius + 1
    padded = np.pad(hm.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    span = np.arange(2 * pad + 1)  # the window: argmax +- (radius + 1), in padded coordinates from ys, xs
    rows = (ys[..., None] + span)[..., :, None]
    cols = (xs[..., None] + span)[..., None, :]
    window = padded[np.arange(n)[:, None, None, None], np.arange(k)[None, :, None, None], rows, cols]
    # Separable 'valid' convolution: (2 pad + 1) -> 3 samples per axis.
    vertical = sum(t * window[..., i:i + 3, :] for i, t in enumerate(taps))
    return sum(t * vertical[..., :, i:i + 3] for i, t in enumerate(taps))


def _decode_dark(hm: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """(N, K, 2) heatmap coordinates and (N, K) scores: argmax refined by DARK's Taylor step."""
    h, w = hm.shape[2:]
    _, ys, xs, coords, scores = _peaks(hm)
    # DARK rescales the smoothed map to the raw maximum before the logarithm; a constant factor is a constant
    # offset of the log and changes no derivative, so it is left out.
    logs = np.log(np.maximum(_smoothed_neighbourhood(hm, ys, xs, sigma), _DARK_LOG_FLOOR))
    centre = logs[..., 1, 1]
    dx = 0.5 * (logs[..., 1, 2] - logs[..., 1, 0])
    dy = 0.5 * (logs[..., 2, 1] - logs[..., 0, 1])
    dxx = logs[..., 1, 2] - 2 * centre + logs[..., 1, 0]
    dyy = logs[..., 2, 1] - 2 * centre + logs[..., 0, 1]
    dxy = 0.25 * (logs[..., 2, 2] - logs[..., 2, 0] - logs[..., 0, 2] + logs[..., 0, 0])
    det = dxx * dyy - dxy**2
    # The step is taken only away from the border (both neighbours inside the map) and at a true maximum.
    interior = (xs > 0) & (xs < w - 1) & (ys > 0) & (ys < h - 1)
    ok = interior & (np.abs(det) > _DARK_MIN_DET) & (dxx < 0) & (dyy < 0)
    safe_det = np.where(ok, det, 1.0)
    # offset = -H^-1 g for H = [[dxx, dxy], [dxy, dyy]].
    off_x = -(dyy * dx - dxy * dy) / safe_det
    off_y = -(dxx * dy - dxy * dx) / safe_det
    step = np.stack([off_x, off_y], -1)
    step = np.where(ok[..., None], np.clip(step, -_DARK_MAX_STEP, _DARK_MAX_STEP), 0.0)
    return coords + step, scores


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

"""Random augmentation draws for the presets of train/config.py (the paper's Table 1, Simple Baselines, "wild").

A draw is a rotation (degrees), a scale multiplier and a flip flag, which the dataset turns into one affine
crop (augmentation never resamples an image twice), plus the optional augmentation for the wild: a half-body
crop, occluders cut from other training images, and photometric changes (colour, blur, noise, JPEG) applied to
the crop. Their random numbers come from ``extra_seed``, drawn only when one of them is on, so that the draws
of the original presets are the same as before these options existed (a resumed run stays bit-identical).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from train.config import WILD_KEYS, AugmentConfig


# Magnitudes of the wild augmentation (fractions of the crop side, pixel units of uint8 images).
OCCLUDER_SIDE_FRACTION = (0.1, 0.4)  # each side of an occluder, as a fraction of the crop's side
COLOR_FACTOR_RANGE = (0.7, 1.3)  # brightness, contrast and saturation multipliers
BLUR_SIGMA_PX = (0.5, 2.0)
NOISE_STD_PX = (2.0, 10.0)
JPEG_QUALITY = (20, 80)
# Lens flare: the glow's radius as a fraction of the crop side, its peak brightness added (uint8 units), and
# 0 to FLARE_MAX_STREAKS streaks through it (as the sun's rays through a lens), each this wide (fraction of side).
FLARE_RADIUS_FRACTION = (0.04, 0.25)
FLARE_PEAK = (120.0, 255.0)
FLARE_MAX_STREAKS = 4
FLARE_STREAK_WIDTH_FRACTION = (0.005, 0.02)
# Tracker-like crops: the runtime crops each frame around the previous frame's confident joints, so its box is
# off by the pose's own errors. Shift per axis ~ U(-s, s) of the crop's side and zoom ~ U(lo, hi) (below 1: a
# tighter box); a share of them have the head cut off: the box pushed down by U(lo, hi) of its height and tighter,
# as after a frame whose head top landed on the chin.
TRACKER_SHIFT_FRACTION = 0.12
TRACKER_ZOOM = (0.75, 1.1)
TRACKER_HEAD_CUT_PROB = 0.35
TRACKER_HEAD_CUT_SHIFT = (0.08, 0.2)
TRACKER_HEAD_CUT_ZOOM = (0.75, 0.95)
# Half-body crops (HRNet): the half's joints' box is enlarged this much, and needs at least this many joints.
HALF_BODY_BOX_FACTOR = 1.5
HALF_BODY_MIN_JOINTS = 3


@dataclass(frozen=True)
class AugmentDraw:
    """One sample's augmentation. half_body: "" (whole person), "upper" or "lower"; occluders: how many;
    extra_seed seeds the occluders' and photometric changes' own random numbers."""

    rotation_deg: float = 0.0
    scale_mult: float = 1.0
    flip: bool = False
    half_body: str = ""
    occluders: int = 0
    color: bool = False
    blur: bool = False
    noise: bool = False
    jpeg: bool = False
    extra_seed: int = 0
    flare: bool = False
    # Tracker-like crop: the crop's center moved by these fractions of its (w, h), its scale multiplied by zoom.
    crop_shift: tuple[float, float] = (0.0, 0.0)
    crop_zoom: float = 1.0

    @property
    def photometric(self) -> bool:
        return self.color or self.blur or self.noise or self.jpeg or self.flare

    @property
    def tracker_crop(self) -> bool:
        return self.crop_shift != (0.0, 0.0) or self.crop_zoom != 1.0


IDENTITY = AugmentDraw()


def draw(cfg: AugmentConfig, rng: np.random.Generator) -> AugmentDraw:
    """One random augmentation from a resolved config."""
    rot, sf = float(cfg.rotation_deg), float(cfg.scale_factor)
    if cfg.distribution == "normal":
        scale = float(np.clip(rng.normal(1.0, sf), 1.0 - sf, 1.0 + sf)) if sf > 0 else 1.0
        rotation = float(np.clip(rng.normal(0.0, rot), -2 * rot, 2 * rot)) if rot > 0 else 0.0
    else:
        scale = float(rng.uniform(1.0 - sf, 1.0 + sf))
        rotation = float(rng.uniform(-rot, rot))
    if rng.random() >= cfg.rotation_prob:
        rotation = 0.0
    flip = bool(rng.random() < cfg.flip_prob)
    if not any(getattr(cfg, name) for name in WILD_KEYS):
        return AugmentDraw(rotation_deg=rotation, scale_mult=scale, flip=flip)
    half_body = ""
    if rng.random() < cfg.half_body_prob:
        half_body = "upper" if rng.random() < 0.5 else "lower"
    occluders = int(rng.integers(1, cfg.occluder_max + 1)) if rng.random() < cfg.occluder_prob else 0
    color, blur, noise, jpeg = (bool(rng.random() < p) for p in (cfg.color_prob, cfg.blur_prob, cfg.noise_prob,
                                                                cfg.jpeg_prob))
    extra_seed = int(rng.integers(0, 2**62))
    # Drawn last and only when asked for (the flare, then the tracker crop), so that configs without them draw
    # exactly the numbers they always did.
    flare = bool(cfg.flare_prob and rng.random() < cfg.flare_prob)
    shift, zoom = (0.0, 0.0), 1.0
    if cfg.tracker_crop_prob and rng.random() < cfg.tracker_crop_prob:
        shift, zoom = tracker_crop(rng)
    return AugmentDraw(rotation, scale, flip, half_body, occluders, color, blur, noise, jpeg,
                       extra_seed=extra_seed, flare=flare, crop_shift=shift, crop_zoom=zoom)


def tracker_crop(rng: np.random.Generator) -> tuple[tuple[float, float], float]:
    """A (shift x, shift y) as fractions of the crop's side, and a zoom, of a crop as the tracker makes it."""
    head_cut = rng.random() < TRACKER_HEAD_CUT_PROB
    dx = float(rng.uniform(-TRACKER_SHIFT_FRACTION, TRACKER_SHIFT_FRACTION))
    if head_cut:
        return (dx, float(rng.uniform(*TRACKER_HEAD_CUT_SHIFT))), float(rng.uniform(*TRACKER_HEAD_CUT_ZOOM))
    return (dx, float(rng.uniform(-TRACKER_SHIFT_FRACTION, TRACKER_SHIFT_FRACTION))), float(rng.uniform(*TRACKER_ZOOM))


def add_flare(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A low sun in view, added to a float32 RGB image: a warm glow with a few streaks through it."""
    h, w = img.shape[:2]
    side = float(max(h, w))
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    radius = rng.uniform(*FLARE_RADIUS_FRACTION) * side
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = xx - cx, yy - cy
    light = np.exp(-(dx * dx + dy * dy) / (2.0 * radius * radius))
    for _ in range(int(rng.integers(0, FLARE_MAX_STREAKS + 1))):
        angle = rng.uniform(0, np.pi)
        width = rng.uniform(*FLARE_STREAK_WIDTH_FRACTION) * side
        across = -dx * np.sin(angle) + dy * np.cos(angle)  # distance from the streak's line
        along = np.abs(dx * np.cos(angle) + dy * np.sin(angle))
        light = np.maximum(light, 0.6 * np.exp(-across * across / (2 * width * width)) * np.exp(-along / (0.5 * side)))
    tint = np.array([1.0, rng.uniform(0.75, 1.0), rng.uniform(0.4, 0.9)], np.float32)  # RGB: white to orange
    return img + light[..., None] * tint * float(rng.uniform(*FLARE_PEAK))


def paste_occluders(patch: np.ndarray, sources: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """``patch`` (h, w, 3) uint8 with one rectangle cut from each of ``sources`` (RGB images) pasted on it at
    random places; each rectangle's sides are OCCLUDER_SIDE_FRACTION of the patch's (clipped to the source)."""
    out = patch.copy()
    h, w = out.shape[:2]
    for src in sources:
        oh = int(min(src.shape[0], max(2, rng.uniform(*OCCLUDER_SIDE_FRACTION) * h)))
        ow = int(min(src.shape[1], max(2, rng.uniform(*OCCLUDER_SIDE_FRACTION) * w)))
        sy, sx = int(rng.integers(0, src.shape[0] - oh + 1)), int(rng.integers(0, src.shape[1] - ow + 1))
        # The top-left corner may lie so that the occluder hangs over the edge: partial occluders at borders.
        dy, dx = int(rng.integers(-oh // 2, h - oh // 2)), int(rng.integers(-ow // 2, w - ow // 2))
        y0, x0, y1, x1 = max(dy, 0), max(dx, 0), min(dy + oh, h), min(dx + ow, w)
        if y1 > y0 and x1 > x0:
            out[y0:y1, x0:x1] = src[sy + (y0 - dy):sy + (y1 - dy), sx + (x0 - dx):sx + (x1 - dx)]
    return out


def photometric(patch: np.ndarray, aug: AugmentDraw, rng: np.random.Generator) -> np.ndarray:
    """Colour (brightness, contrast, saturation), blur, noise and JPEG as ``aug`` says, on an RGB uint8 crop."""
    img = patch.astype(np.float32)
    if aug.color:
        brightness, contrast, saturation = rng.uniform(*COLOR_FACTOR_RANGE, size=3)
        img *= brightness
        img = (img - img.mean()) * contrast + img.mean()
        grey = img @ np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601 luma
        img = (img - grey[..., None]) * saturation + grey[..., None]
    if aug.blur:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(*BLUR_SIGMA_PX)))
    if aug.flare:
        img = add_flare(img, rng)
    if aug.noise:
        img += rng.normal(0.0, rng.uniform(*NOISE_STD_PX), img.shape).astype(np.float32)
    out = np.clip(img, 0, 255).round().astype(np.uint8)
    if aug.jpeg:
        quality = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
        ok, data = cv2.imencode(".jpg", np.ascontiguousarray(out[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            out = cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]
    return np.ascontiguousarray(out)

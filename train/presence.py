"""Person-free training crops for the presence head: background crops, synthetic images, video backgrounds.

A person-free sample has presence target 0 and all-zero heatmap targets with joint weights 1, so the network
learns to output no joint (and a low presence) where nobody is. Three kinds:

- background crops of an annotated image (``background_crop``): a square crop at a random position, scale and
  rotation whose area does not touch the annotated person's joint box grown by a margin, so no annotated
  joint and no limb between joints is inside it. Other, unannotated people in the photo can still be there
  (LSP/LSPET sports photos have spectators): label noise we accept and state.
- synthetic images (``SyntheticDataset``): flat colours (black and white included), Gaussian and uniform
  ("static") noise, gradients, smooth blobs, random shapes, optionally blurred or noisy.
- video frames (``VideoDataset``) of a clip with a hand-labelled box that holds the person in every frame:
  background crops away from it (and from any other person or human-like object), and, as presence-only
  positives, crops that contain the whole box, from a tight box up to the whole frame letterboxed.

Partial people (less than about half the torso visible) are ambiguous: no sample here is one. Background crops
never touch the person's grown box and person crops hold the whole person, so the ambiguous band is simply
never drawn.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from rehab.core.transforms import SCALE_UNIT_PX, affine_matrix, letterbox

logger = logging.getLogger(__name__)

# Background crop side, as a fraction of the person box's larger side, drawn log-uniformly: from a close-up
# of a patch of background to a view wider than the person.
BACKGROUND_SIDE_RANGE = (0.25, 1.5)
# The smallest background crop side, image pixels: smaller crops are a few blurred pixels blown up to 192.
SMALLEST_SIDE_PX = 24.0
# Draws tried per sample before it is given up (its loss weights become 0).
BACKGROUND_TRIES = 40
# A background crop's center must lie inside the image, so that most of it is image, not black border.
VIDEO_BACKGROUND_SIDE_RANGE = (0.08, 0.6)  # of the frame's larger side
# A video person crop's side: from the person box grown by this factor up to the whole frame.
VIDEO_PERSON_MIN_PAD = 1.1
VIDEO_WHOLE_FRAME_PROB = 0.3
# Frames of a video source are kept at this fraction of their size (memory; crops are 192 px anyway).
VIDEO_KEEP_SCALE = 0.5
SYNTHETIC_KINDS = ("flat", "gaussian_noise", "static", "gradient", "blobs", "shapes")
SYNTHETIC_DEFAULT_COUNT = 1000
# Share of person-free images given letterbox bars, and the kept band's share of the side (a 1080x300 strip of
# a portrait frame keeps 28%).
LETTERBOX_PROB = 0.25
LETTERBOX_KEEP_RANGE = (0.15, 0.8)
# Salt of the synthetic generator's seed, so that evaluation images differ from training images.
_TRAIN_SALT, _EVAL_SALT = 11, 23


def polygons_overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two convex polygons (n, 2) overlap (separating axis test; touching counts as overlapping)."""
    for poly in (a, b):
        edges = np.roll(poly, -1, axis=0) - poly
        for ex, ey in edges:
            axis = np.array([-ey, ex])
            pa, pb = a @ axis, b @ axis
            if pa.max() < pb.min() or pb.max() < pa.min():
                return False
    return True


def box_corners(box_xyxy) -> np.ndarray:
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]])


def crop_corners(matrix: np.ndarray, output_size) -> np.ndarray:
    """The crop's four corners in image pixels (the crop rectangle mapped back through ``matrix``)."""
    w, h = (float(v) for v in output_size)
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    inv = np.linalg.inv(full)[:2]
    corners = np.array([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]], dtype=np.float64)
    return corners @ inv.T


def crop_is_clear(matrix: np.ndarray, output_size, boxes: list) -> bool:
    """True when the crop of ``matrix`` touches none of ``boxes`` (xyxy, image pixels)."""
    corners = crop_corners(matrix, output_size)
    return not any(polygons_overlap(corners, box_corners(b)) for b in boxes)


def background_crop(image_size, keep_out: list, rng: np.random.Generator, output_size, side_ref_px: float,
                    side_range=BACKGROUND_SIDE_RANGE, max_rotation_deg: float = 0.0,
                    tries: int = BACKGROUND_TRIES) -> tuple[np.ndarray, np.ndarray, float] | None:
    """(center, scale, rotation) of a square crop inside ``image_size`` (w, h) that touches no ``keep_out`` box,
    or None after ``tries`` draws. Side = ``side_ref_px`` x a log-uniform draw from ``side_range``."""
    w, h = (float(v) for v in image_size)
    aspect = float(output_size[0]) / float(output_size[1])
    lo, hi = np.log(side_range[0]), np.log(side_range[1])
    for attempt in range(tries):
        if attempt == tries // 2:
            # Tight photos (LSP) leave only thin margins around the person: the second half of the draws
            # tries smaller crops (still at least SMALLEST_SIDE_PX, so that some image detail survives).
            lo, hi = np.log(min(side_range[0], SMALLEST_SIDE_PX / side_ref_px)), np.log(side_range[0])
        side_h = float(side_ref_px * np.exp(rng.uniform(lo, hi)))
        center = np.array([rng.uniform(0, w), rng.uniform(0, h)])
        rotation = float(rng.uniform(-max_rotation_deg, max_rotation_deg)) if max_rotation_deg > 0 else 0.0
        scale = np.array([side_h * aspect, side_h]) / SCALE_UNIT_PX
        matrix = affine_matrix(center, scale, rotation, output_size)
        if crop_is_clear(matrix, output_size, keep_out):
            return center, scale, rotation
    return None


def empty_meta(num_joints: int, index: int, center=None, scale=None, rotation_deg: float = 0.0, flip: bool = False,
               matrix=None) -> dict:
    """A sample's meta with no annotated joint, with the same keys and shapes as a PoseDataset sample's."""
    nan_joints = np.full((num_joints, 2), np.nan)
    return {
        "center": np.asarray(center if center is not None else [np.nan, np.nan], dtype=np.float64),
        "scale": np.asarray(scale if scale is not None else [np.nan, np.nan], dtype=np.float64),
        "rotation_deg": float(rotation_deg),
        "flip": bool(flip),
        "matrix": np.asarray(matrix if matrix is not None else np.full((2, 3), np.nan), dtype=np.float64),
        "joints_px": nan_joints,
        "joints_crop_px": nan_joints.copy(),
        "annotated": np.zeros(num_joints, dtype=bool),
        "visible": np.zeros(num_joints, dtype=bool),
        "head_box_xyxy": np.full(4, np.nan),
        "index": index,
    }


def person_free_sample(patch_rgb: np.ndarray, num_joints: int, heatmap_size, meta: dict, usable: bool = True) -> dict:
    """Presence 0, zero heatmaps with weight 1 (weights 0 and presence weight 0 when not ``usable``)."""
    hw, hh = (int(v) for v in heatmap_size)
    weight = np.ones(num_joints, dtype=np.float32) if usable else np.zeros(num_joints, dtype=np.float32)
    return {
        "image": torch.from_numpy(np.ascontiguousarray(patch_rgb.transpose(2, 0, 1))),
        "target": torch.zeros(num_joints, hh, hw),
        "target_weight": torch.from_numpy(weight),
        "presence": torch.tensor(0.0),
        "presence_weight": torch.tensor(1.0 if usable else 0.0),
        "meta": meta,
    }


# ----------------------------------------------------------------------------------------------
# synthetic person-free images


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=3).astype(np.float32)


def synthetic_image(rng: np.random.Generator, size, kind: str | None = None) -> np.ndarray:
    """One (h, w, 3) uint8 RGB person-free image of ``size`` (w, h); ``kind`` None draws one of SYNTHETIC_KINDS."""
    w, h = (int(v) for v in size)
    kind = kind or SYNTHETIC_KINDS[int(rng.integers(len(SYNTHETIC_KINDS)))]
    grey = rng.random() < 0.5
    if kind == "flat":
        choice = rng.random()
        # Black and white frames are the classic "camera covered / overexposed" cases: a third of flats.
        value = (np.zeros(3) if choice < 1 / 6 else np.full(3, 255.0) if choice < 1 / 3 else _colour(rng))
        img = np.broadcast_to(value.astype(np.float32), (h, w, 3)).copy()
    elif kind == "gaussian_noise":
        sigma = rng.uniform(5, 90)
        shape = (h, w, 1) if grey else (h, w, 3)
        img = _colour(rng) + rng.normal(0, sigma, size=shape).astype(np.float32)
        img = np.broadcast_to(img, (h, w, 3)).copy()
    elif kind == "static":
        shape = (h, w, 1) if grey else (h, w, 3)
        img = np.broadcast_to(rng.integers(0, 256, size=shape).astype(np.float32), (h, w, 3)).copy()
    elif kind == "gradient":
        a, b = _colour(rng), _colour(rng)
        theta = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        t = (np.cos(theta) * xx / w + np.sin(theta) * yy / h)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        img = a + (b - a) * t[..., None]
    elif kind == "blobs":
        cells = int(rng.integers(2, 12))
        small = rng.integers(0, 256, size=(cells, cells, 1 if grey else 3)).astype(np.float32)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        img = np.broadcast_to(img.reshape(h, w, -1), (h, w, 3)).copy()
    elif kind == "shapes":
        img = np.broadcast_to(_colour(rng), (h, w, 3)).copy()
        for _ in range(int(rng.integers(1, 12))):
            colour = tuple(float(c) for c in _colour(rng))
            p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            shape = rng.integers(3)
            if shape == 0:
                cv2.rectangle(img, p1, p2, colour, -1 if rng.random() < 0.5 else int(rng.integers(1, 8)))
            elif shape == 1:
                cv2.circle(img, p1, int(rng.integers(3, max(w, h) // 2)), colour, -1 if rng.random() < 0.5 else 3)
            else:
                cv2.line(img, p1, p2, colour, int(rng.integers(1, 10)))
    else:
        raise ValueError(f"unknown synthetic kind {kind!r}; known: {', '.join(SYNTHETIC_KINDS)}")
    if kind not in ("static",) and rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.5, 6)))
    if kind in ("flat", "gradient", "shapes") and rng.random() < 0.3:
        img = img + rng.normal(0, rng.uniform(2, 20), size=img.shape).astype(np.float32)
    if rng.random() < LETTERBOX_PROB:
        img = letterbox_bars(img, rng)
    return np.clip(img, 0, 255).astype(np.uint8)


def letterbox_bars(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Black bars above and below (or left and right) of a random band: how a frame of another aspect ratio,
    or a strip of a frame, looks once letterboxed into the square network input."""
    h, w = img.shape[:2]
    out = np.zeros_like(img)
    keep = float(rng.uniform(*LETTERBOX_KEEP_RANGE))
    if rng.random() < 0.5:
        band = max(1, int(round(h * keep)))
        y0 = (h - band) // 2
        out[y0:y0 + band] = img[y0:y0 + band]
    else:
        band = max(1, int(round(w * keep)))
        x0 = (w - band) // 2
        out[:, x0:x0 + band] = img[:, x0:x0 + band]
    return out


class SyntheticDataset(Dataset):
    """``count`` procedural person-free images, drawn anew each training epoch from (seed, epoch, index)."""

    def __init__(self, count: int, num_joints: int, output_size, heatmap_size, seed: int = 0, train: bool = True,
                 name: str = "synthetic") -> None:
        if count < 1:
            raise ValueError(f"a synthetic source needs count >= 1, got {count}")
        self.count = count
        self.num_joints = num_joints
        self.output_size = tuple(int(v) for v in output_size)
        self.heatmap_size = tuple(int(v) for v in heatmap_size)
        self.seed = seed
        self.train = train
        self.name = name
        self.epoch = 0

    def __len__(self) -> int:
        return self.count

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict:
        salt = _TRAIN_SALT if self.train else _EVAL_SALT
        rng = np.random.default_rng([self.seed, salt, self.epoch if self.train else 0, index])
        patch = synthetic_image(rng, self.output_size)
        return person_free_sample(patch, self.num_joints, self.heatmap_size, empty_meta(self.num_joints, index))


# ----------------------------------------------------------------------------------------------
# video frames with a hand-labelled person box


def read_video_frames(path: Path, frame_step: int, keep_scale: float = VIDEO_KEEP_SCALE) -> list[np.ndarray]:
    """Every ``frame_step``-th frame of the clip as RGB uint8, resized by ``keep_scale``."""
    if not path.is_file():
        raise FileNotFoundError(f"video source not found: {path}")
    capture = cv2.VideoCapture(str(path))
    frames: list[np.ndarray] = []
    index = 0
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            if index % frame_step == 0:
                small = cv2.resize(bgr, None, fx=keep_scale, fy=keep_scale, interpolation=cv2.INTER_AREA)
                frames.append(cv2.cvtColor(small, cv2.COLOR_BGR2RGB))
            index += 1
    finally:
        capture.release()
    if not frames:
        raise ValueError(f"cannot decode any frame of {path}")
    return frames


class VideoDataset(Dataset):
    """Crops of a clip's frames: person-free backgrounds or presence-only crops holding the whole person.

    ``person_box_xyxy`` (frame pixels) holds the person in every frame; ``exclude_boxes`` are other people
    or human-like objects (a bystander, an anatomical skeleton) that background crops keep clear of too.
    ``count`` items per epoch (default: the number of kept frames x 4).
    """

    def __init__(self, path: Path, person_box_xyxy, exclude_boxes, sample_mode: str, num_joints: int, output_size,
                 heatmap_size, frame_step: int = 2, count: int | None = None, seed: int = 0, train: bool = True,
                 flip_prob: float = 0.5, box_margin: float = 0.1, name: str = "") -> None:
        self.frames = read_video_frames(Path(path), frame_step)
        k = VIDEO_KEEP_SCALE
        self.person_box = np.asarray(person_box_xyxy, dtype=np.float64) * k
        pw, ph = self.person_box[2] - self.person_box[0], self.person_box[3] - self.person_box[1]
        if not (pw > 0 and ph > 0):
            raise ValueError(f"{path}: person_box_xyxy must have x2 > x1 and y2 > y1, got {person_box_xyxy}")
        grow = np.array([-pw, -ph, pw, ph]) * box_margin
        self.keep_out = [self.person_box + grow] + [np.asarray(b, dtype=np.float64) * k for b in exclude_boxes]
        self.sample_mode = sample_mode
        self.num_joints = num_joints
        self.output_size = tuple(int(v) for v in output_size)
        self.heatmap_size = tuple(int(v) for v in heatmap_size)
        self.count = count or len(self.frames) * 4
        self.seed = seed
        self.train = train
        self.flip_prob = flip_prob if train else 0.0
        self.name = name or f"video:{Path(path).stem}:{sample_mode}"
        self.epoch = 0
        self.given_up = 0

    def __len__(self) -> int:
        return self.count

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _person_crop(self, rng: np.random.Generator, frame_size) -> tuple[np.ndarray, np.ndarray]:
        fw, fh = frame_size
        if rng.random() < VIDEO_WHOLE_FRAME_PROB:
            return letterbox((fw, fh), self.output_size)
        x1, y1, x2, y2 = self.person_box
        grow = (VIDEO_PERSON_MIN_PAD - 1) / 2
        px1, px2 = x1 - grow * (x2 - x1), x2 + grow * (x2 - x1)
        py1, py2 = y1 - grow * (y2 - y1), y2 + grow * (y2 - y1)
        aspect = self.output_size[0] / self.output_size[1]
        need = max((px2 - px1) / aspect, py2 - py1)
        full = max(fw / aspect, fh, need)
        side_h = float(np.exp(rng.uniform(np.log(need), np.log(full))))
        side_w = side_h * aspect
        # Any center that keeps the whole padded box inside the crop.
        cx = rng.uniform(px2 - side_w / 2, px1 + side_w / 2)
        cy = rng.uniform(py2 - side_h / 2, py1 + side_h / 2)
        return np.array([cx, cy]), np.array([side_w, side_h]) / SCALE_UNIT_PX

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, 31, self.epoch if self.train else 0, index])
        frame = self.frames[int(rng.integers(len(self.frames)))]
        fh, fw = frame.shape[:2]
        flip = bool(rng.random() < self.flip_prob)
        usable = True
        band = False
        if self.sample_mode == "person":
            center, scale = self._person_crop(rng, (fw, fh))
            rotation = 0.0
        else:
            found = background_crop((fw, fh), self.keep_out, rng, self.output_size, max(fw, fh),
                                    side_range=VIDEO_BACKGROUND_SIDE_RANGE)
            band = found is not None and rng.random() < LETTERBOX_PROB
            if found is None:
                self.given_up += 1
                usable = False
                center, scale = letterbox((fw, fh), self.output_size)
                rotation = 0.0
            else:
                center, scale, rotation = found
        matrix = affine_matrix(center, scale, rotation, self.output_size)
        patch = cv2.warpAffine(frame, matrix, self.output_size, flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        if self.sample_mode != "person" and usable and band:
            # Only a band of the clear crop is image, the rest black: a person-free strip of a frame, letterboxed.
            patch = letterbox_bars(patch, rng)
        if flip:
            patch = patch[:, ::-1]
        meta = empty_meta(self.num_joints, index, center, scale, rotation, flip, matrix)
        if self.sample_mode == "person":
            hw, hh = self.heatmap_size
            return {
                "image": torch.from_numpy(np.ascontiguousarray(patch.transpose(2, 0, 1))),
                "target": torch.zeros(self.num_joints, hh, hw),
                "target_weight": torch.zeros(self.num_joints),  # no joint annotations: presence only
                "presence": torch.tensor(1.0),
                "presence_weight": torch.tensor(1.0),
                "meta": meta,
            }
        return person_free_sample(patch, self.num_joints, self.heatmap_size, meta, usable)


"""Pose datasets yielding one sample type, and a mixed dataset over several sources.

A sample is a dict:
  image         (3, h, w) uint8 RGB crop (normalised on the device by ``train.preprocess.normalize_tensor``)
  target        (K, hh, hw) float32 Gaussian heatmaps
  target_weight (K,) float32, 0 for joints not annotated or far outside the crop
  meta          center (2,), scale (2,) in 200 px units, rotation_deg, flip, matrix (2, 3) image->crop
                (before any flip), joints_px (K, 2) image pixels (NaN = not annotated), joints_crop_px (K, 2)
                the same joints in the (flipped) crop, in the crop's left/right naming, annotated (K,),
                visible (K,) (the annotation as read, never flipped), head_box_xyxy (4,) (NaN if none), index
  presence      () float32, 1 = a person is in the crop, 0 = person-free (train.presence)
  presence_weight () float32, 0 removes the sample from the presence loss
Augmentation draws come from a generator seeded by (seed, epoch, index), so a sample is the same whatever
the worker count, and a resumed run sees the same data as an uninterrupted one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from rehab import pose_annotations
from rehab.core.heatmaps import coordinate_stride, encode
from rehab.core.skeleton import JointSet, convert, get_joint_set
from rehab.core.transforms import (
    SCALE_UNIT_PX,
    apply_affine,
    box_to_center_scale,
    flip_points,
    keypoints_box,
    letterbox,
)
from rehab.pose_annotations import PoseRecord
from train.augment import (
    HALF_BODY_BOX_FACTOR,
    HALF_BODY_MIN_JOINTS,
    IDENTITY,
    AugmentDraw,
    draw,
    paste_occluders,
    photometric,
)
from train.config import GENERATED_KINDS, REPO_ROOT, AugmentConfig, Config, SourceConfig, data_root, resolve_path
from train.hard_negatives import MinedDataset
from train.preprocess import crop
from train.presence import (
    LETTERBOX_PROB,
    SYNTHETIC_DEFAULT_COUNT,
    SyntheticDataset,
    VideoDataset,
    background_crop,
    empty_meta,
    letterbox_bars,
    person_free_sample,
)

logger = logging.getLogger(__name__)

# Half-body crops: the lower half is the hips and below (pelvis included), everything else is the upper half.
_LOWER_BODY_JOINTS = frozenset({"right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
                                "pelvis"})


@dataclass(frozen=True)
class CropSettings:
    input_size: tuple[int, int]
    heatmap_size: tuple[int, int]
    sigma: float
    box_margin: float
    box_padding: float
    heatmap_encoding: str = "standard"

    @property
    def stride(self) -> float:
        return self.input_size[0] / self.heatmap_size[0]

    @property
    def coordinate_stride(self) -> np.ndarray:
        """(sx, sy) input pixels per heatmap pixel of the configured heatmap encoding."""
        return coordinate_stride(self.input_size, self.heatmap_size, self.heatmap_encoding)

    @property
    def aspect_ratio(self) -> float:
        return self.input_size[0] / self.input_size[1]


class ImageStore:
    """Reads images by path (RGB uint8), optionally keeping file bytes or pixels in memory."""

    def __init__(self, mode: str = "none") -> None:
        self.mode = mode
        self._cache: dict[Path, object] = {}

    def read(self, record: PoseRecord) -> np.ndarray:
        path = record.image_path
        cached = self._cache.get(path)
        if cached is not None and self.mode == "decoded":
            return cached  # type: ignore[return-value]
        if cached is None:
            if not path.is_file():
                raise FileNotFoundError(f"image file not found: {path} (dataset entry: {record.entry})")
            cached = np.fromfile(path, dtype=np.uint8)
        bgr = cv2.imdecode(cached, cv2.IMREAD_COLOR)  # type: ignore[arg-type]
        if bgr is None:
            raise ValueError(f"cannot decode image {path} (dataset entry: {record.entry}); the file is damaged or "
                             "not an image")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if self.mode == "encoded":
            self._cache[path] = cached
        elif self.mode == "decoded":
            self._cache[path] = rgb
        return rgb


def record_center_scale(record: PoseRecord, image_size: tuple[int, int], settings: CropSettings,
                        full_image: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Crop box of a record: MPII center/scale, else the person box, else the joints' box with a margin.

    Falls back to the whole image (letterboxed) when fewer than two joints are annotated.
    """
    if not full_image:
        if record.center_px is not None and record.scale_h is not None:
            h = record.scale_h * settings.box_padding
            return np.array(record.center_px, dtype=np.float64), np.array([h * settings.aspect_ratio, h])
        box = record.box_xyxy
        if box is None:
            box = keypoints_box(record.joints_px, record.annotated, margin=settings.box_margin)
        if box is not None:
            return box_to_center_scale(box, settings.aspect_ratio, padding=settings.box_padding)
    return letterbox(image_size, settings.input_size)


class PoseDataset(Dataset):
    """Records of one source, mapped into ``joint_set``, cropped and optionally augmented."""

    def __init__(self, records: list[PoseRecord], joint_set: JointSet, settings: CropSettings,
                 augment: AugmentConfig | None = None, seed: int = 0, full_image: bool = False,
                 image_cache: str = "none", name: str = "", sample_mode: str = "person", heatmap_loss: bool = True,
                 zoom_out: tuple[float, float] | None = None) -> None:
        """``sample_mode`` background: crops of each image away from its annotated person (train.presence);
        ``heatmap_loss`` False: person samples with heatmap weights 0 (presence only); ``zoom_out`` (min, max):
        the person crop's scale is multiplied by a draw from it (the person smaller in the crop)."""
        self.records = records
        self.sample_mode = sample_mode
        self.heatmap_loss = heatmap_loss
        self.zoom_out = tuple(zoom_out) if zoom_out else None
        self.given_up = 0
        self.joint_set = joint_set
        self.settings = settings
        self.augment = augment
        self.seed = seed
        self.full_image = full_image
        self.images = ImageStore(image_cache)
        self.name = name
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def draw_for(self, index: int) -> AugmentDraw:
        if self.augment is None:
            return IDENTITY
        return draw(self.augment, np.random.default_rng([self.seed, self.epoch, index]))

    def joints(self, record: PoseRecord) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(joints_px, annotated, visible) of a record in this dataset's joint set."""
        if record.joint_set == self.joint_set:
            return record.joints_px, record.annotated, record.visible
        kp, annotated = convert(record.joints_px, record.annotated, record.joint_set, self.joint_set)
        _, visible = convert(record.joints_px, record.visible, record.joint_set, self.joint_set)
        return kp, annotated, visible

    def __getitem__(self, index: int) -> dict:
        return self.sample(index, self.draw_for(index))

    def _extra_rng(self, index: int, stream: int = 7) -> np.random.Generator:
        # Streams of their own, so that adding zoom/background draws leaves the augmentation draws unchanged.
        return np.random.default_rng([self.seed, self.epoch if self.augment is not None else 0, index, stream])

    def background_sample(self, index: int, aug: AugmentDraw) -> dict:
        """A crop of the record's image that touches no part of the annotated person's grown joint box."""
        record = self.records[index]
        image = self.images.read(record)
        s = self.settings
        kp, annotated, _ = self.joints(record)
        size = (image.shape[1], image.shape[0])
        person = record.box_xyxy if record.box_xyxy is not None else keypoints_box(kp, annotated, margin=s.box_margin)
        if person is None:  # fewer than two annotated joints: nowhere is known to be person-free
            keep_out, ref = None, float(max(size))
        else:
            keep_out = [np.asarray(person, dtype=np.float64)]
            ref = float(max(person[2] - person[0], person[3] - person[1]))
        max_rot = float(self.augment.rotation_deg) if self.augment is not None else 0.0
        found = None if keep_out is None else background_crop(size, keep_out, self._extra_rng(index), s.input_size,
                                                              ref, max_rotation_deg=max_rot)
        if found is None:
            self.given_up += 1
            center, scale = letterbox(size, s.input_size)
            rotation = 0.0
        else:
            center, scale, rotation = found
        patch, matrix = crop(image, center, scale, rotation, s.input_size)
        rng = self._extra_rng(index, stream=8)
        if found is not None and rng.random() < LETTERBOX_PROB:
            patch = letterbox_bars(patch, rng)
        if aug.photometric:  # the same light and camera as the person crops, or they would become the cue
            patch = photometric(patch, aug, np.random.default_rng(aug.extra_seed))
        if aug.flip:
            patch = patch[:, ::-1]
        meta = empty_meta(len(self.joint_set.joints), index, center, scale, rotation, aug.flip, matrix)
        return person_free_sample(patch, len(self.joint_set.joints), s.heatmap_size, meta, usable=found is not None)

    def half_body_box(self, kp: np.ndarray, annotated: np.ndarray, half: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Center/scale of the upper or lower body's annotated joints (HRNet's half-body crop), or None when
        that half has fewer than HALF_BODY_MIN_JOINTS of them (the whole person is cropped then)."""
        lower = np.array([j in _LOWER_BODY_JOINTS for j in self.joint_set.joints])
        chosen = annotated.astype(bool) & (lower if half == "lower" else ~lower)
        if chosen.sum() < HALF_BODY_MIN_JOINTS:
            return None
        box = keypoints_box(kp, chosen, margin=self.settings.box_margin)
        if box is None:
            return None
        center, scale = box_to_center_scale(box, self.settings.aspect_ratio, padding=self.settings.box_padding)
        return center, scale * HALF_BODY_BOX_FACTOR

    def sample(self, index: int, aug: AugmentDraw) -> dict:
        if self.sample_mode == "background":
            return self.background_sample(index, aug)
        record = self.records[index]
        image = self.images.read(record)
        s = self.settings
        kp, annotated, visible = self.joints(record)
        center, scale = record_center_scale(record, (image.shape[1], image.shape[0]), s, self.full_image)
        if aug.half_body:
            center, scale = self.half_body_box(kp, annotated, aug.half_body) or (center, scale)
        scale = scale * aug.scale_mult
        if aug.tracker_crop:
            center = center + np.asarray(aug.crop_shift) * scale * SCALE_UNIT_PX
            scale = scale * aug.crop_zoom
        if self.zoom_out is not None:
            scale = scale * float(self._extra_rng(index).uniform(*self.zoom_out))
        patch, matrix = crop(image, center, scale, aug.rotation_deg, s.input_size)
        if aug.occluders or aug.photometric:
            extra = np.random.default_rng(aug.extra_seed)
            if aug.occluders:
                # Rectangles cut from other images of this source: real textures (people, gear, background).
                others = extra.integers(0, len(self.records), size=aug.occluders)
                patch = paste_occluders(patch, [self.images.read(self.records[int(i)]) for i in others], extra)
            if aug.photometric:
                patch = photometric(patch, aug, extra)
        kp_crop = apply_affine(kp, matrix)
        crop_annotated = annotated
        if aug.flip:
            perm = self.joint_set.flip_permutation
            patch = patch[:, ::-1]
            kp_crop = flip_points(kp_crop, s.input_size[0], perm)
            crop_annotated = annotated[perm]
        target, weight = encode(kp_crop, crop_annotated, s.heatmap_size, s.coordinate_stride, s.sigma)
        if aug.tracker_crop:
            # An annotated joint outside a tracker-like crop is taught as "not here" (an empty map), so the
            # network learns not to put a cut-off head on the chin, the mistake the tracker then follows.
            weight = np.where(crop_annotated.astype(bool) & np.isfinite(kp_crop).all(1), 1.0, weight).astype(np.float32)
        if not self.heatmap_loss:
            weight = np.zeros_like(weight)
        head_box = record.head_box_xyxy if record.head_box_xyxy is not None else np.full(4, np.nan)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(patch.transpose(2, 0, 1))),
            "target": torch.from_numpy(target),
            "target_weight": torch.from_numpy(weight),
            "presence": torch.tensor(1.0),
            "presence_weight": torch.tensor(1.0),
            "meta": {
                "center": center.astype(np.float64),
                "scale": np.asarray(scale, dtype=np.float64),
                "rotation_deg": float(aug.rotation_deg),
                "flip": bool(aug.flip),
                "matrix": matrix,
                "joints_px": np.array(kp, dtype=np.float64),
                "joints_crop_px": np.array(kp_crop, dtype=np.float64),
                "annotated": np.array(annotated, dtype=bool),
                "visible": np.array(visible, dtype=bool),
                "head_box_xyxy": np.array(head_box, dtype=np.float64),
                "index": index,
            },
        }


class MixedDataset(Dataset):
    """Several sources in one joint set, by per-source count (fixed seeded subset) or per-epoch ratio.

    count: a source contributes exactly ``count`` items (a seeded subset, or with repeats when larger).
    ratio: each epoch of ``epoch_size`` items draws round(ratio share x epoch_size) from each source anew.
    Neither: plain concatenation.
    """

    def __init__(self, sources: list[PoseDataset], counts: list[int | None] | None = None,
                 ratios: list[float | None] | None = None, epoch_size: int | None = None, seed: int = 0) -> None:
        if not sources:
            raise ValueError("a mixed dataset needs at least one source")
        for ds in sources:
            if len(ds) == 0:
                raise ValueError(f"dataset source {ds.name or '?'} has no entries")
        self.sources = sources
        self.counts = counts or [None] * len(sources)
        self.ratios = ratios or [None] * len(sources)
        self.seed = seed
        self.use_ratio = any(r is not None for r in self.ratios)
        if self.use_ratio:
            total = float(sum(r for r in self.ratios if r is not None))
            if not total > 0:
                raise ValueError(f"source ratios must be positive, got {self.ratios}")
            size = epoch_size or sum(len(s) for s in sources)
            self.per_source = [int(round(size * (r or 0.0) / total)) for r in self.ratios]
        else:
            self.per_source = [len(s) if c is None else int(c) for s, c in zip(sources, self.counts)]
        self.epoch = 0
        self._fixed = [self._fixed_subset(i) for i in range(len(sources))] if not self.use_ratio else None
        self._index = self._build_index()

    def _fixed_subset(self, i: int) -> np.ndarray:
        n, want = len(self.sources[i]), self.per_source[i]
        if self.counts[i] is None:
            return np.arange(n)
        rng = np.random.default_rng([self.seed, i])
        if want <= n:
            return np.sort(rng.choice(n, size=want, replace=False))
        return np.concatenate([np.arange(n), rng.choice(n, size=want - n, replace=True)])

    def _build_index(self) -> np.ndarray:
        parts = []
        for i, ds in enumerate(self.sources):
            if self._fixed is not None:
                items = self._fixed[i]
            else:
                rng = np.random.default_rng([self.seed, self.epoch, i])
                items = rng.integers(0, len(ds), size=self.per_source[i])
            parts.append(np.stack([np.full(len(items), i), items], 1))
        return np.concatenate(parts).astype(np.int64)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        for ds in self.sources:
            ds.set_epoch(epoch)
        if self.use_ratio:
            self._index = self._build_index()

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int) -> dict:
        src, item = self._index[index]
        sample = self.sources[int(src)][int(item)]
        sample["meta"]["source"] = int(src)
        return sample


# ----------------------------------------------------------------------------------------------
# building datasets from the config


def read_source(cfg: Config, src: SourceConfig) -> list[PoseRecord]:
    """The records of one configured source: the slice [start, stop), then ``limit`` evenly spaced entries."""
    path = resolve_path(cfg, src.path)
    if src.kind == "lsp":
        records = pose_annotations.read_lsp(path, src.split)
    elif src.kind == "lspet":
        records = pose_annotations.read_lspet(path, src.split)
    elif src.kind == "mpii":
        ann = path / (src.ann_file or "mpii_annotations.json.gz") if path.is_dir() else path
        head_boxes = ann.parent / "detections_our_format.mat"
        records = pose_annotations.read_mpii(ann, src.split, src.image_dir or "images", cfg.data.mpii_center_shift,
                                    head_boxes if src.split == "valid" and head_boxes.is_file() else None)
    elif src.kind == "mpii_json":
        ann = path / src.ann_file if src.ann_file else path
        records = pose_annotations.read_mpii_json(ann, src.image_dir, cfg.data.mpii_center_shift)
    elif src.kind == "coco":
        ann = path / src.ann_file if src.ann_file else path
        records = pose_annotations.read_coco(ann, src.image_dir)
    else:
        raise ValueError(f"unknown source kind {src.kind!r}")
    if src.start is not None or src.stop is not None:
        records = records[src.start:src.stop]
    if src.limit is not None and src.limit < len(records):
        keep = np.linspace(0, len(records) - 1, src.limit).round().astype(int)
        records = [records[i] for i in keep]
    return records


def crop_settings(cfg: Config) -> CropSettings:
    m = cfg.model
    return CropSettings(tuple(m.input_size), tuple(m.heatmap_size), m.sigma, cfg.data.box_margin, cfg.data.box_padding,
                        m.heatmap_encoding)


def build_source_dataset(cfg: Config, src: SourceConfig, train: bool):
    """A PoseDataset, or for kinds synthetic / video a SyntheticDataset / VideoDataset (train.presence)."""
    num_joints = len(get_joint_set(cfg.model.joint_set).joints)
    if src.kind == "synthetic":
        return SyntheticDataset(src.count or SYNTHETIC_DEFAULT_COUNT, num_joints, cfg.model.input_size,
                                cfg.model.heatmap_size, seed=cfg.train.seed, train=train)
    if src.kind == "mined":
        path = Path(src.path) if Path(src.path).is_absolute() else REPO_ROOT / src.path
        return MinedDataset(path, num_joints, cfg.model.input_size, cfg.model.heatmap_size, count=src.count,
                            seed=cfg.train.seed, train=train, flip_prob=cfg.augment.flip_prob if train else 0.0,
                            image_root=data_root(cfg))
    if src.kind == "video":
        return VideoDataset(resolve_path(cfg, src.path), src.person_box_xyxy, src.exclude_boxes_xyxy, src.sample,
                            num_joints, cfg.model.input_size, cfg.model.heatmap_size, frame_step=src.frame_step,
                            count=src.count, seed=cfg.train.seed, train=train,
                            flip_prob=cfg.augment.flip_prob if train else 0.0)
    records = read_source(cfg, src)
    return PoseDataset(records, get_joint_set(cfg.model.joint_set), crop_settings(cfg),
                       augment=cfg.augment if train else None, seed=cfg.train.seed,
                       full_image=src.crop == "full_image", image_cache=cfg.data.image_cache,
                       name=f"{src.kind}:{src.split}:{src.sample}", sample_mode=src.sample,
                       heatmap_loss=src.heatmap_loss, zoom_out=tuple(src.zoom_out) if src.zoom_out else None)


def build_train_dataset(cfg: Config) -> MixedDataset:
    sources = [build_source_dataset(cfg, s, train=True) for s in cfg.data.train]
    # A generated source's count is its size, not a subset of it.
    counts = [None if s.kind in GENERATED_KINDS else s.count for s in cfg.data.train]
    return MixedDataset(sources, counts, [s.ratio for s in cfg.data.train], cfg.data.epoch_size, seed=cfg.train.seed)


def build_eval_dataset(cfg: Config, sources: list[SourceConfig]) -> MixedDataset:
    return MixedDataset([build_source_dataset(cfg, s, train=False) for s in sources], seed=cfg.train.seed)

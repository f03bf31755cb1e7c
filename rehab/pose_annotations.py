"""Annotation readers: LSP, LSPET, MPII (json.gz and HRNet-style json) and COCO person keypoints.

Every reader returns a list of ``PoseRecord`` with joints in 0-based image pixels of the reader's own joint
set; images are not opened here (they are read lazily by the dataset).

Weights: a joint takes part in training and evaluation when its position is *annotated*. Occluded joints
with an annotated position (LSP flag 1, MPII visibility 0 with coordinates, COCO v=1) count as annotated;
their visibility flag is kept in ``visible``. This matches what HRNet's MPII json calls ``joints_vis``
(checked on the fixture: it is 1 for occluded-but-annotated joints where the json.gz flag is 0).
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rehab.core.skeleton import COCO17, LSP14, MPII16, JointSet

logger = logging.getLogger(__name__)

LSP_TRAIN_COUNT = 1000  # im0001-im1000 train, im1001-im2000 test (the standard split)

# MPII, LSP and LSPET annotations are MATLAB 1-based pixel coordinates; subtract this once, in
# matlab_to_zero_based.
MATLAB_INDEX_BASE = 1.0


@dataclass(frozen=True, eq=False)
class PoseRecord:
    """One annotated person.

    joints_px: (K, 2) 0-based image pixels (NaN where not annotated).
    annotated: (K,) bool, position known. visible: (K,) bool, not occluded (where the dataset says so).
    center_px / scale_h: person center and height in 200 px units (MPII), else None.
    box_xyxy: person box (COCO), else None. head_box_xyxy: MPII head box for PCKh, else None.
    image_size: (w, h) where the annotation gives it (MPII json.gz), else None.
    entry: names the dataset entry in error messages, e.g. "lsp im0042".
    """

    image_path: Path
    joints_px: np.ndarray
    annotated: np.ndarray
    visible: np.ndarray
    joint_set: JointSet
    entry: str
    center_px: np.ndarray | None = None
    scale_h: float | None = None
    box_xyxy: np.ndarray | None = None
    head_box_xyxy: np.ndarray | None = None
    image_size: tuple[int, int] | None = None  # (w, h) when the annotation says so (MPII json.gz)


def _load_mat(path: Path, key: str, shape_text: str) -> np.ndarray:
    import scipy.io

    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        data = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises several types for damaged files
        raise ValueError(f"cannot read MATLAB file {path}: {type(exc).__name__}: {exc}") from None
    if key not in data:
        found = sorted(k for k in data if not k.startswith("__"))
        raise ValueError(f"{path} has no variable {key!r} (expected {shape_text}); found {found}")
    return np.asarray(data[key], dtype=np.float64)


def _split_indices(split: str, total: int, train_count: int, dataset: str) -> range:
    if split == "train":
        return range(0, train_count)
    if split == "test":
        return range(train_count, total)
    if split == "all":
        return range(0, total)
    raise ValueError(f"{dataset} split must be train, test or all, got {split!r}")


def _frozen(*arrays: np.ndarray) -> None:
    for a in arrays:
        a.setflags(write=False)


def read_lsp(root: str | os.PathLike[str], split: str = "train") -> list[PoseRecord]:
    """LSP: joints.mat ``joints`` (3, 14, 2000) rows x, y, flag; flag 0 = visible, 1 = occluded.

    Occluded joints carry an estimated position, so all 14 joints count as annotated.
    """
    root = Path(root)
    path = root / "joints.mat"
    joints = _load_mat(path, "joints", "(3, 14, N)")
    if joints.ndim != 3 or joints.shape[:2] != (3, LSP14.num_joints):
        raise ValueError(f"{path}: LSP 'joints' must have shape (3, 14, N), got {joints.shape} "
                         "(is this an LSPET file? LSPET is (14, 3, N))")
    total = joints.shape[2]
    records = []
    for i in _split_indices(split, total, min(LSP_TRAIN_COUNT, total), "lsp"):
        name = f"im{i + 1:04d}"
        kp = matlab_to_zero_based(joints[:2, :, i].T)
        visible = joints[2, :, i] == 0
        annotated = np.isfinite(kp).all(1)
        _frozen(kp, visible, annotated)
        records.append(PoseRecord(root / "images" / f"{name}.jpg", kp, annotated, visible, LSP14, f"lsp {name}"))
    return records


def read_lspet(root: str | os.PathLike[str], split: str = "all") -> list[PoseRecord]:
    """LSPET: joints.mat ``joints`` (14, 3, 10000) joint x (x, y, vis); vis 1 = visible, 0 = not annotated."""
    root = Path(root)
    path = root / "joints.mat"
    joints = _load_mat(path, "joints", "(14, 3, N)")
    if joints.ndim != 3 or joints.shape[:2] != (LSP14.num_joints, 3):
        raise ValueError(f"{path}: LSPET 'joints' must have shape (14, 3, N), got {joints.shape} "
                         "(is this an LSP file? LSP is (3, 14, N))")
    total = joints.shape[2]
    records = []
    for i in _split_indices(split, total, total, "lspet"):
        name = f"im{i + 1:05d}"
        annotated = joints[:, 2, i] > 0
        kp = np.where(annotated[:, None], matlab_to_zero_based(joints[:, :2, i]), np.nan)
        visible = annotated.copy()
        _frozen(kp, visible, annotated)
        records.append(PoseRecord(root / "images" / f"{name}.jpg", kp, annotated, visible, LSP14, f"lspet {name}"))
    return records


def matlab_to_zero_based(points_1based: np.ndarray) -> np.ndarray:
    """MATLAB pixel coordinates (MPII, LSP, LSPET) start at 1; everything downstream uses 0-based pixels."""
    return np.asarray(points_1based, dtype=np.float64) - MATLAB_INDEX_BASE


def _mpii_record(image_path: Path, joints_1based: np.ndarray, flags: np.ndarray, center_1based, scale: float,
                 entry: str, center_shift: float, annotated: np.ndarray | None = None,
                 image_size: tuple[int, int] | None = None) -> PoseRecord:
    if annotated is None:
        # Unannotated joints are stored as (0, 0) in the json.gz and (-1, -1) in the HRNet json.
        annotated = ~((joints_1based[:, 0] <= 0) & (joints_1based[:, 1] <= 0))
    kp = np.where(annotated[:, None], matlab_to_zero_based(joints_1based), np.nan)
    visible = (flags > 0) & annotated
    center = matlab_to_zero_based(center_1based)
    # Simple Baselines/HRNet move the MPII center down a little so the crop does not cut the legs.
    center[1] += center_shift * scale
    _frozen(kp, visible, annotated, center)
    return PoseRecord(image_path, kp, annotated, visible, MPII16, entry, center_px=center, scale_h=float(scale),
                      image_size=image_size)


def _read_json(path: Path) -> object:
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                return json.load(fh)
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read JSON file {path}: {type(exc).__name__}: {exc}") from None


def _field(entry: dict, key: str, path: Path, index: int):
    try:
        return entry[key]
    except (KeyError, TypeError):
        raise ValueError(f"{path}: entry {index} lacks the field {key!r}") from None


def read_mpii(path: str | os.PathLike[str], split: str = "train", image_dir: str | os.PathLike[str] = "images",
              center_shift: float = 15.0, head_boxes_file: str | os.PathLike[str] | None = None) -> list[PoseRecord]:
    """MPII from ``mpii_annotations.json.gz``: isValidation 0/1 = train/valid (22,246 / 2,958).

    center = objpos, scale = scale_provided, joints = joint_self[:, :2], visibility = joint_self[:, 2].
    ``image_dir`` is relative to the json's folder unless absolute. The valid split takes its head boxes
    (for PCKh) from ``head_boxes_file`` (detections_our_format.mat, columns in valid order) when given.
    """
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of person entries, got {type(data).__name__}")
    if split not in ("train", "valid", "all"):
        raise ValueError(f"mpii split must be train, valid or all, got {split!r}")
    images = Path(image_dir) if Path(image_dir).is_absolute() else path.parent / image_dir
    records = []
    for i, entry in enumerate(data):
        is_valid = bool(_field(entry, "isValidation", path, i))
        if (split == "train" and is_valid) or (split == "valid" and not is_valid):
            continue
        joints = np.asarray(_field(entry, "joint_self", path, i), dtype=np.float64)
        if joints.shape != (MPII16.num_joints, 3):
            raise ValueError(f"{path}: entry {i} joint_self must be 16 x [x, y, vis], got shape {joints.shape}")
        name = str(_field(entry, "img_paths", path, i))
        size = (int(entry["img_width"]), int(entry["img_height"])) if "img_width" in entry and "img_height" in entry else None
        records.append(_mpii_record(images / name, joints[:, :2], joints[:, 2],
                                    _field(entry, "objpos", path, i), float(_field(entry, "scale_provided", path, i)),
                                    f"mpii #{i} {name}", center_shift, image_size=size))
    if head_boxes_file is not None and split == "valid":
        boxes = _load_mat(Path(head_boxes_file), "headboxes_src", "(2, 2, N)")
        if boxes.shape != (2, 2, len(records)):
            raise ValueError(f"{head_boxes_file}: headboxes_src must have shape (2, 2, {len(records)}) to match the "
                             f"valid split, got {boxes.shape}")
        records = [_with_head_box(r, matlab_to_zero_based(boxes[:, :, j]).reshape(4)) for j, r in enumerate(records)]
    return records


def _with_head_box(record: PoseRecord, box: np.ndarray) -> PoseRecord:
    from dataclasses import replace

    return replace(record, head_box_xyxy=box)


def read_mpii_json(path: str | os.PathLike[str], image_dir: str | os.PathLike[str] = "",
                   center_shift: float = 15.0) -> list[PoseRecord]:
    """HRNet-style MPII json (train.json/valid.json): image, center, scale, joints (16x2), joints_vis.

    The coordinates are MATLAB 1-based as in the json.gz; joints_vis means "annotated".
    """
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of person entries, got {type(data).__name__}")
    images = Path(image_dir) if image_dir and Path(image_dir).is_absolute() else path.parent / image_dir
    records = []
    for i, entry in enumerate(data):
        joints = np.asarray(_field(entry, "joints", path, i), dtype=np.float64)
        vis = np.asarray(_field(entry, "joints_vis", path, i), dtype=np.float64)
        if joints.shape != (MPII16.num_joints, 2) or vis.shape != (MPII16.num_joints,):
            raise ValueError(f"{path}: entry {i} needs joints (16, 2) and joints_vis (16,), got {joints.shape}, "
                             f"{vis.shape}")
        name = str(_field(entry, "image", path, i))
        annotated = vis > 0
        records.append(_mpii_record(images / name, joints, vis, _field(entry, "center", path, i),
                                    float(_field(entry, "scale", path, i)), f"mpii_json #{i} {name}", center_shift,
                                    annotated=annotated))
    return records


def read_coco(path: str | os.PathLike[str], image_dir: str | os.PathLike[str] = "",
              min_keypoints: int = 1) -> list[PoseRecord]:
    """COCO person keypoints json: one record per non-crowd person with >= ``min_keypoints`` labelled.

    Keypoint v: 0 = not labelled, 1 = labelled but not visible, 2 = visible. The box is [x, y, w, h].
    """
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, dict) or "annotations" not in data or "images" not in data:
        raise ValueError(f"{path}: not a COCO keypoints file (needs 'images' and 'annotations')")
    images = Path(image_dir) if image_dir and Path(image_dir).is_absolute() else path.parent / image_dir
    files = {img["id"]: img["file_name"] for img in data["images"]}
    records = []
    for i, ann in enumerate(data["annotations"]):
        if ann.get("iscrowd", 0) or ann.get("num_keypoints", 0) < min_keypoints:
            continue
        kps = np.asarray(_field(ann, "keypoints", path, i), dtype=np.float64)
        if kps.shape != (3 * COCO17.num_joints,):
            raise ValueError(f"{path}: annotation {i} needs 51 keypoint values, got {kps.shape}")
        kps = kps.reshape(COCO17.num_joints, 3)
        annotated = kps[:, 2] > 0
        kp = np.where(annotated[:, None], kps[:, :2], np.nan)
        visible = kps[:, 2] > 1
        x, y, w, h = (float(v) for v in _field(ann, "bbox", path, i))
        box = np.array([x, y, x + w, y + h])
        image_id = _field(ann, "image_id", path, i)
        if image_id not in files:
            raise ValueError(f"{path}: annotation {i} refers to image_id {image_id}, which 'images' lacks")
        _frozen(kp, annotated, visible, box)
        records.append(PoseRecord(images / files[image_id], kp, annotated, visible, COCO17,
                                  f"coco ann {ann.get('id', i)} {files[image_id]}", box_xyxy=box))
    return records

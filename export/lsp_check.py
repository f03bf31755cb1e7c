"""Real LSP images for export: verification inputs, INT8 calibration, and PCK@0.2 of an exported file.

Everything goes through the runtime's own path (``rehab.runtime.model``: whole image letterboxed, the same
crop and normalisation a user gets), so a number measured here is the number the app delivers. Calibration
uses the LSP train split and evaluation the held-out test split; both take evenly spaced images, the
selection train/ uses for ``limit`` (so 300 test images are exactly train's validation set).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from rehab.accuracy import pck_torso, predict_records
from rehab.core.skeleton import LSP14
from rehab.pose_annotations import PoseRecord
from rehab.runtime.metadata import ModelInfo
from rehab.runtime.model import MAX_BATCH, PoseModel, person_center_scale, preprocess
from train.config import Config, SourceConfig, default_shared_dir
from train.dataset import read_source

logger = logging.getLogger(__name__)

LSP_PATH = "data/lsp"
PCK_ALPHA = 0.2
EVAL_SET_NAME = "lsp test (im1001-im2000), whole image letterboxed, PCK@0.2 over the 12 limb joints"
# Where export measures PCK drift: "test" (evenly spaced LSP test images, the v1 protocol) or "holdout", LSP train
# im0801-im1000, held out of the v2 recipe's training, so the test set is read once, by `rehab evaluate`.
EVAL_SETS = {
    "test": ("test", None, EVAL_SET_NAME),
    "holdout": ("train", 800, "lsp train im0801-im1000 (held out of the v2 recipe's training), whole image "
                              "letterboxed, PCK@0.2 over the 12 limb joints"),
}


@dataclass(frozen=True)
class PCKSummary:
    """PCK@0.2 of one model on an LSP subset."""

    pck: float
    images: int
    flip_test: bool
    eval_set: str = EVAL_SET_NAME

    def to_dict(self) -> dict:
        return {"pck@0.2": self.pck, "images": self.images, "flip_test": self.flip_test, "eval_set": self.eval_set}


def resolve_data_root(data_root: str | os.PathLike[str] | None) -> Path:
    """The shared folder holding data/lsp: the argument, else $REHAB_SHARED_DIR, else <repo>/../shared."""
    root = Path(data_root) if data_root else default_shared_dir()
    if not (root / LSP_PATH / "joints.mat").is_file():
        raise FileNotFoundError(f"LSP data not found under {root} (looked for {root / LSP_PATH / 'joints.mat'}); "
                                "pass --data-root (the folder that contains data/lsp) or set REHAB_SHARED_DIR")
    return root


def lsp_records(data_root: str | os.PathLike[str] | None, split: str, limit: int,
                start: int | None = None) -> list[PoseRecord]:
    """``limit`` evenly spaced LSP records of ``split`` (train | test), from its ``start``-th record on."""
    if limit < 1:
        raise ValueError(f"the number of images must be >= 1, got {limit}")
    cfg = Config()
    cfg.data.root = str(resolve_data_root(data_root))
    return read_source(cfg, SourceConfig(kind="lsp", path=LSP_PATH, split=split, start=start, limit=limit,
                                         crop="full_image"))


def eval_records(data_root: str | os.PathLike[str] | None, eval_set: str, limit: int) -> list[PoseRecord]:
    """The records of one of EVAL_SETS (at most ``limit``)."""
    if eval_set not in EVAL_SETS:
        raise ValueError(f"unknown evaluation set {eval_set!r}; choose one of {', '.join(EVAL_SETS)}")
    split, start, _ = EVAL_SETS[eval_set]
    return lsp_records(data_root, split, limit, start)


def read_bgr(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read image {path}")
    return image


def network_inputs(records: list[PoseRecord], info: ModelInfo) -> np.ndarray:
    """Network input batch (N, 3, h, w) float32 of the records' whole images, as the runtime makes it."""
    tensors = []
    for record in records:
        image = read_bgr(record.image_path)
        center, scale = person_center_scale(image.shape, None, info)
        tensors.append(preprocess(image, center, scale, info)[0])
    return np.concatenate(tensors, axis=0)


# Person-free verification crops: the classic bad inputs (black, white, static) plus seeded synthetic images.
PRESENCE_CHECK_SEED = 5


def person_free_inputs(info: ModelInfo, count: int, seed: int = PRESENCE_CHECK_SEED) -> np.ndarray:
    """``count`` person-free network inputs (N, 3, h, w): black, white, uniform static, then synthetic images
    (train.presence), made through the runtime's preprocessing like every other input here."""
    from train.presence import synthetic_image

    w, h = info.input_size
    rng = np.random.default_rng(seed)
    images = [np.zeros((h, w, 3), np.uint8), np.full((h, w, 3), 255, np.uint8),
              rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)]
    while len(images) < count:
        images.append(synthetic_image(rng, (w, h))[:, :, ::-1].copy())
    tensors = []
    for image in images[:count]:
        center, scale = person_center_scale(image.shape, None, info)
        tensors.append(preprocess(image, center, scale, info)[0])
    return np.concatenate(tensors, axis=0)


def lsp_pck(model: PoseModel, records: list[PoseRecord], flip_test: bool = False, progress: bool = True,
            desc: str = "PCK", eval_set: str = EVAL_SET_NAME) -> PCKSummary:
    """PCK@0.2 over the 12 LSP limb joints (torso = left shoulder to right hip, occluded joints included)."""
    # The one prediction loop and PCK@0.2 of rehab.accuracy (what `rehab evaluate` reports), batched for speed.
    scored, _ = predict_records(model, records, flip_test=flip_test, batch_size=MAX_BATCH, progress=progress,
                                desc=desc)
    result = pck_torso(scored, LSP14, alpha=PCK_ALPHA, limb_joints_only=True)
    return PCKSummary(pck=float(result.mean), images=len(records), flip_test=flip_test, eval_set=eval_set)


# Person-free calibration images (another seed than the presence check's, so the check stays unseen).
CALIBRATION_PERSON_FREE_SEED = 17


def calibration_inputs(data_root: str | os.PathLike[str] | None, info: ModelInfo, count: int) -> np.ndarray:
    """INT8 calibration inputs: ``count`` LSP train images, plus half as many person-free ones for a model with a
    presence output. Calibrated on people alone, the presence logit's range never goes below 0, so every person-free
    crop (logit -7 to -10 in FP32) quantises to 0, probability 0.5: a person everywhere (measured on the v2
    candidate: 50% of decisions flipped, 100% kept with person-free images in the calibration)."""
    tensors = network_inputs(lsp_records(data_root, "train", count), info)
    if info.has_presence:
        tensors = np.concatenate([tensors, person_free_inputs(info, max(1, count // 2), CALIBRATION_PERSON_FREE_SEED)])
    return tensors

"""The network input, in one place: the affine person crop and the ImageNet normalisation.

The crop is ``rehab.core.transforms.affine_matrix`` + ``cv2.warpAffine`` with bilinear interpolation and a
black border, which the torch-free runtime can reproduce exactly. Normalisation is
``(rgb / pixel_range - mean_rgb) / std_rgb`` in NCHW; the numbers live in ``ModelConfig`` and travel with
every checkpoint.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from rehab.core.transforms import affine_matrix
from train.config import ModelConfig


def crop(image_rgb: np.ndarray, center, scale, rot_deg: float, output_size) -> tuple[np.ndarray, np.ndarray]:
    """(crop (h, w, 3) uint8, 2x3 image->crop matrix) for the box center/scale turned by ``rot_deg``."""
    matrix = affine_matrix(center, scale, rot_deg, output_size)
    out_w, out_h = (int(v) for v in output_size)
    patch = cv2.warpAffine(image_rgb, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return patch, matrix


def normalize_numpy(crop_rgb: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """(h, w, 3) uint8 RGB -> (3, h, w) float32 network input."""
    mean = np.asarray(cfg.mean_rgb, dtype=np.float32)
    std = np.asarray(cfg.std_rgb, dtype=np.float32)
    x = (crop_rgb.astype(np.float32) / cfg.pixel_range - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def normalize_tensor(images_uint8: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """(N, 3, h, w) uint8 RGB batch -> float32 network input, the same arithmetic as ``normalize_numpy``."""
    if images_uint8.ndim != 4 or images_uint8.shape[1] != 3:
        raise ValueError(f"images must have shape (N, 3, H, W), got {tuple(images_uint8.shape)}")
    mean = torch.tensor(cfg.mean_rgb, dtype=torch.float32, device=images_uint8.device).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std_rgb, dtype=torch.float32, device=images_uint8.device).view(1, 3, 1, 1)
    return (images_uint8.float() / cfg.pixel_range - mean) / std

"""Argument checks that name the argument and the shape expected of it."""

from __future__ import annotations

import numpy as np


def as_points(value, name: str, num_joints: int | None = None) -> np.ndarray:
    """A float64 array of shape (..., K, 2)."""
    arr = np.asarray(value, dtype=np.float64)
    k = "K" if num_joints is None else str(num_joints)
    if arr.ndim < 2 or arr.shape[-1] != 2 or (num_joints is not None and arr.shape[-2] != num_joints):
        raise ValueError(f"{name} must have shape (..., {k}, 2), got {arr.shape}")
    return arr


def as_heatmaps(value, name: str = "heatmaps") -> tuple[np.ndarray, bool]:
    """A float array of shape (N, K, H, W); also says whether a single (K, H, W) was given."""
    arr = np.asarray(value)
    single = arr.ndim == 3
    if single:
        arr = arr[None]
    if arr.ndim != 4 or min(arr.shape[-2:]) < 1:
        raise ValueError(f"{name} must have shape (N, K, H, W) or (K, H, W), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{name} must be a float array, got dtype {arr.dtype}")
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN")
    return arr, single

"""The one check of an image handed to the runtime (the model, the pipeline, the video writer).

An image is a uint8 (H, W, 3) BGR array, as from cv2.imread or a decoded video frame; grey (H, W) or (H, W, 1)
and BGRA (H, W, 4) are converted. Each entry point checks its input once, here, and passes the checked image
on to functions that take it as given.
"""

from __future__ import annotations

import cv2
import numpy as np

GREY_NOTE = "grayscale input converted to BGR by repeating the channel"
BGRA_NOTE = "4-channel input treated as BGRA; the alpha channel is dropped"


def as_bgr_frame(frame, name: str = "frame") -> np.ndarray:
    """``frame`` itself when it is a contiguous uint8 (H, W, 3) array, else a converted copy (grey, BGRA);
    a ValueError naming ``name``, what it got and what is expected otherwise."""
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"{name} must be a numpy array of shape (H, W, 3) uint8 BGR, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ValueError(f"{name} must have dtype uint8 (8-bit BGR, shape (H, W, 3)), got dtype {frame.dtype} with "
                         f"shape {frame.shape}; convert e.g. with np.clip(x * 255, 0, 255).astype(np.uint8)")
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (1, 3, 4)):
        raise ValueError(f"{name} must have shape (H, W, 3) BGR (or (H, W) grey, (H, W, 4) BGRA), "
                         f"got shape {frame.shape}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {frame.shape}, expected (H, W, 3) with H, W > 0")
    if frame.ndim == 2 or frame.shape[2] == 1:
        return cv2.cvtColor(np.ascontiguousarray(frame.reshape(frame.shape[:2])), cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(frame)


def conversion_note(frame: np.ndarray) -> str | None:
    """What :func:`as_bgr_frame` converts in a valid ``frame`` (None: nothing), for a caller that says so."""
    channels = 1 if frame.ndim == 2 else frame.shape[2]
    return GREY_NOTE if channels == 1 else BGRA_NOTE if channels == 4 else None

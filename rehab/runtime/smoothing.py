"""Temporal smoothing of keypoints with the One Euro filter (Casiez, Roussel and Vogel, CHI 2012).

The One Euro filter is a low-pass filter whose cutoff rises with the signal's speed: still joints are held
steady (low cutoff: jitter removed) and moving joints follow with little lag (high cutoff). Every joint
coordinate has its own filter state. A joint scored below the threshold is marked unreliable and passed
through as the model gave it, never filled in from its history; its filter restarts when it comes back, so
a stale position is never blended into a fresh one.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from rehab.settings import SmoothingSettings

logger = logging.getLogger(__name__)


def smoothing_factor(cutoff_hz: np.ndarray | float, dt_s: np.ndarray | float) -> np.ndarray:
    """Exponential smoothing factor of a first-order low-pass filter at ``cutoff_hz`` sampled every ``dt_s``."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff_hz, dtype=np.float64))
    return 1.0 / (1.0 + tau / np.asarray(dt_s, dtype=np.float64))


class OneEuroFilter:
    """Element-wise One Euro filter over arrays of a fixed shape; elements can be (re)started one by one."""

    def __init__(self, shape: tuple[int, ...], min_cutoff_hz: float = 1.0, beta: float = 0.0,
                 d_cutoff_hz: float = 1.0) -> None:
        if not (min_cutoff_hz > 0 and d_cutoff_hz > 0 and beta >= 0):
            raise ValueError(f"need min_cutoff_hz > 0, d_cutoff_hz > 0, beta >= 0; got {min_cutoff_hz}, "
                             f"{d_cutoff_hz}, {beta}")
        self.shape = tuple(shape)
        self.min_cutoff_hz = float(min_cutoff_hz)
        self.beta = float(beta)
        self.d_cutoff_hz = float(d_cutoff_hz)
        self._x = np.zeros(self.shape)
        self._dx = np.zeros(self.shape)
        self._t = np.zeros(self.shape)
        self._started = np.zeros(self.shape, dtype=bool)

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Forget the history of all elements, or of those where ``mask`` is True."""
        if mask is None:
            self._started[:] = False
        else:
            self._started[np.asarray(mask, dtype=bool)] = False

    def __call__(self, x: np.ndarray, t_s: float, mask: np.ndarray | None = None) -> np.ndarray:
        """Filter ``x`` observed at time ``t_s``; elements outside ``mask`` are left untouched and unfiltered."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape != self.shape:
            raise ValueError(f"x must have shape {self.shape}, got {x.shape}")
        use = np.isfinite(x) if mask is None else (np.asarray(mask, dtype=bool) & np.isfinite(x))
        out = x.copy()
        fresh = use & ~self._started
        cont = use & self._started
        if cont.any():
            dt = t_s - self._t[cont]
            if (dt <= 0).any():
                raise ValueError(f"t_s must increase between calls, got {t_s} after {self._t[cont].max()}")
            dx = (x[cont] - self._x[cont]) / dt
            dx_hat = self._dx[cont] + smoothing_factor(self.d_cutoff_hz, dt) * (dx - self._dx[cont])
            cutoff = self.min_cutoff_hz + self.beta * np.abs(dx_hat)
            x_hat = self._x[cont] + smoothing_factor(cutoff, dt) * (x[cont] - self._x[cont])
            out[cont] = x_hat
            self._x[cont] = x_hat
            self._dx[cont] = dx_hat
        self._x[fresh] = x[fresh]
        self._dx[fresh] = 0.0
        self._t[use] = t_s
        self._started |= use
        return out


@dataclass(frozen=True)
class SmoothedJoints:
    keypoints_px: np.ndarray  # (K, 2): filtered where reliable, the model's raw position elsewhere
    reliable: np.ndarray  # (K,) bool


def reliable_mask(keypoints_px: np.ndarray, scores: np.ndarray, min_score: float) -> np.ndarray:
    kp = np.asarray(keypoints_px, dtype=np.float64)
    return np.isfinite(kp).all(-1) & np.isfinite(scores) & (np.asarray(scores) >= min_score)


class PoseSmoother:
    """One Euro filtering of a (K, 2) pose per frame, in units of the frame height."""

    def __init__(self, num_joints: int, settings: SmoothingSettings | None = None, min_score: float = 0.3) -> None:
        self.settings = settings or SmoothingSettings()
        self.num_joints = int(num_joints)
        self.min_score = float(min_score)
        s = self.settings
        self._filter = OneEuroFilter((self.num_joints, 2), s.min_cutoff_hz, s.beta, s.d_cutoff_hz)
        self._last_t = -math.inf
        self._frame_height: float | None = None

    def reset(self) -> None:
        self._filter.reset()
        self._last_t = -math.inf
        self._frame_height = None

    def update(self, keypoints_px: np.ndarray, scores: np.ndarray, t_s: float, frame_height: float) -> SmoothedJoints:
        kp = np.asarray(keypoints_px, dtype=np.float64)
        sc = np.asarray(scores, dtype=np.float64)
        if kp.shape != (self.num_joints, 2) or sc.shape != (self.num_joints,):
            raise ValueError(f"keypoints_px must be ({self.num_joints}, 2) and scores ({self.num_joints},), "
                             f"got {kp.shape} and {sc.shape}")
        if not frame_height > 0:
            raise ValueError(f"frame_height must be > 0, got {frame_height}")
        reliable = reliable_mask(kp, sc, self.min_score)
        if not self.settings.enabled:
            return SmoothedJoints(kp.copy(), reliable)
        dt = t_s - self._last_t
        if frame_height != self._frame_height or not 0 < dt <= self.settings.max_gap_s:
            if self._frame_height is not None:
                logger.debug("smoothing restarted: dt=%.3f s, frame height %s -> %s", dt, self._frame_height, frame_height)
            self._filter.reset()
            self._frame_height = float(frame_height)
        self._last_t = t_s
        # Joints that dropped out lose their history now, so their return starts a fresh filter.
        self._filter.reset(~np.repeat(reliable[:, None], 2, axis=1))
        mask = np.repeat(reliable[:, None], 2, axis=1)
        scale = self._frame_height
        out = self._filter(kp / scale, t_s, mask) * scale
        out[~reliable] = kp[~reliable]
        return SmoothedJoints(out, reliable)

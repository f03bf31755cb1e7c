"""Augmentation presets (the paper's Table 1 plus the Simple Baselines default) and random draws.

A draw is a rotation (degrees), a scale multiplier and a flip flag; the dataset turns them into one affine
crop, so augmentation never resamples an image twice.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass

import numpy as np

from train.config import AUG_DISTRIBUTIONS, AugmentConfig, ConfigError


@dataclass(frozen=True)
class AugmentPreset:
    rotation_deg: float
    scale_factor: float
    flip_prob: float = 0.5
    rotation_prob: float = 1.0
    distribution: str = "uniform"


# Table 1 of the paper (rotation range, scale range), plus Simple Baselines' defaults, which draw from a
# clipped Gaussian and rotate only 60% of the samples.
PRESETS: dict[str, AugmentPreset] = {
    "none": AugmentPreset(rotation_deg=0.0, scale_factor=0.0, flip_prob=0.0),
    "normal": AugmentPreset(rotation_deg=0.0, scale_factor=0.01),
    "weak": AugmentPreset(rotation_deg=5.0, scale_factor=0.06),
    "strong": AugmentPreset(rotation_deg=15.0, scale_factor=0.12),
    "simple_baselines": AugmentPreset(rotation_deg=30.0, scale_factor=0.25, rotation_prob=0.6, distribution="normal"),
}


def resolve_augment(cfg: AugmentConfig) -> AugmentConfig:
    """Fill every unset value from the preset; values set explicitly win."""
    if cfg.preset not in PRESETS:
        close = difflib.get_close_matches(cfg.preset, list(PRESETS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"augment.preset must be one of {', '.join(PRESETS)}, got {cfg.preset!r}{hint}")
    preset = PRESETS[cfg.preset]
    values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    for name in ("rotation_deg", "scale_factor", "flip_prob", "rotation_prob", "distribution"):
        if values[name] is None:
            values[name] = getattr(preset, name)
    if values["distribution"] not in AUG_DISTRIBUTIONS:
        raise ConfigError(f"augment.distribution must be one of {', '.join(AUG_DISTRIBUTIONS)}, "
                          f"got {values['distribution']!r}")
    for name in ("flip_prob", "rotation_prob"):
        if not 0.0 <= values[name] <= 1.0:
            raise ConfigError(f"augment.{name} must lie in [0, 1], got {values[name]}")
    if values["rotation_deg"] < 0 or not 0.0 <= values["scale_factor"] < 1.0:
        raise ConfigError(f"augment.rotation_deg must be >= 0 and augment.scale_factor in [0, 1), got "
                          f"{values['rotation_deg']}, {values['scale_factor']}")
    return AugmentConfig(**values)


@dataclass(frozen=True)
class AugmentDraw:
    rotation_deg: float = 0.0
    scale_mult: float = 1.0
    flip: bool = False


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
    return AugmentDraw(rotation_deg=rotation, scale_mult=scale, flip=flip)

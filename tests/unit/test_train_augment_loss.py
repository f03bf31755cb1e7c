"""Augmentation draws and the weighted heatmap loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from train.augment import draw
from train.config import AugmentConfig, resolve_augment
from train.loss import JointsMSELoss


def test_uniform_draws_stay_in_range_and_flip_about_half():
    cfg = resolve_augment(AugmentConfig(preset="strong"))
    rng = np.random.default_rng(0)
    draws = [draw(cfg, rng) for _ in range(2000)]
    rot = np.array([d.rotation_deg for d in draws])
    scale = np.array([d.scale_mult for d in draws])
    assert np.abs(rot).max() <= 15.0 and np.abs(rot).max() > 14.0
    assert scale.min() >= 0.88 and scale.max() <= 1.12
    assert 0.45 < np.mean([d.flip for d in draws]) < 0.55


def test_simple_baselines_draws_clip_and_rotate_sometimes():
    cfg = resolve_augment(AugmentConfig(preset="simple_baselines"))
    rng = np.random.default_rng(1)
    draws = [draw(cfg, rng) for _ in range(2000)]
    rot = np.array([d.rotation_deg for d in draws])
    assert np.abs(rot).max() <= 60.0
    assert 0.3 < np.mean(rot == 0.0) < 0.5  # rotation applied with probability 0.6
    assert all(0.75 <= d.scale_mult <= 1.25 for d in draws)


def test_none_preset_is_identity():
    cfg = resolve_augment(AugmentConfig(preset="none"))
    d = draw(cfg, np.random.default_rng(0))
    assert (d.rotation_deg, d.scale_mult, d.flip) == (0.0, 1.0, False)


def test_loss_is_half_mse_and_ignores_weight_zero_joints():
    pred = torch.zeros(1, 2, 2, 2)
    target = torch.ones(1, 2, 2, 2)
    loss = JointsMSELoss()
    assert float(loss(pred, target, torch.ones(1, 2))) == pytest.approx(0.5)
    assert float(loss(pred, target, torch.tensor([[1.0, 0.0]]))) == pytest.approx(0.25)
    pred2 = pred.clone()
    pred2[0, 1] = 100.0  # a wildly wrong joint with weight 0 changes nothing
    assert float(loss(pred2, target, torch.tensor([[1.0, 0.0]]))) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="target_weight"):
        loss(pred, target, torch.ones(2))

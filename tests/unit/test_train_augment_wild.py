"""Augmentation for the wild: the preset's draws, half-body crops, occluders, photometric changes, and the
guarantee that the original presets draw exactly as before these options existed."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from rehab.core.skeleton import LSP14
from rehab.pose_annotations import PoseRecord
from train.augment import (
    AugmentDraw,
    draw,
    paste_occluders,
    photometric,
)
from train.config import AugmentConfig, ConfigError, resolve_augment
from train.dataset import CropSettings, PoseDataset

SETTINGS = CropSettings(input_size=(64, 64), heatmap_size=(16, 16), sigma=1.0, box_margin=0.15, box_padding=1.0)


def _old_draw(cfg, rng):
    """The draw as it was before the wild options (uniform distribution): rotation, scale, flip."""
    scale = float(rng.uniform(1.0 - cfg.scale_factor, 1.0 + cfg.scale_factor))
    rotation = float(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg))
    if rng.random() >= cfg.rotation_prob:
        rotation = 0.0
    return rotation, scale, bool(rng.random() < cfg.flip_prob)


@pytest.mark.parametrize("preset", ["normal", "weak", "strong"])
def test_original_presets_draw_the_same_numbers_as_before(preset):
    cfg = resolve_augment(AugmentConfig(preset=preset))
    assert cfg.half_body_prob == cfg.occluder_prob == cfg.jpeg_prob == 0.0
    new, old = np.random.default_rng(5), np.random.default_rng(5)
    for _ in range(200):
        d = draw(cfg, new)
        assert (d.rotation_deg, d.scale_mult, d.flip) == _old_draw(cfg, old)
        assert not (d.half_body or d.occluders or d.photometric) and d.extra_seed == 0


def test_wild_preset_draws_every_option_at_about_its_rate():
    cfg = resolve_augment(AugmentConfig(preset="wild"))
    assert (cfg.rotation_deg, cfg.scale_factor) == (40.0, 0.30)
    draws = [draw(cfg, np.random.default_rng([0, i])) for i in range(3000)]
    rot = np.array([d.rotation_deg for d in draws])
    scale = np.array([d.scale_mult for d in draws])
    assert 39.0 < np.abs(rot).max() <= 40.0 and scale.min() >= 0.7 and scale.max() <= 1.3
    assert 0.25 < np.mean([bool(d.half_body) for d in draws]) < 0.35
    assert {d.half_body for d in draws} == {"", "upper", "lower"}
    assert 0.45 < np.mean([d.occluders > 0 for d in draws]) < 0.55
    assert max(d.occluders for d in draws) == cfg.occluder_max
    for name, rate in (("color", 0.5), ("blur", 0.2), ("noise", 0.2), ("jpeg", 0.3)):
        assert abs(np.mean([getattr(d, name) for d in draws]) - rate) < 0.05, name
    again = [draw(cfg, np.random.default_rng([0, i])) for i in range(50)]
    assert again == draws[:50]  # seeded by (seed, epoch, index): reproducible, so resumable


def test_wild_options_are_validated_with_named_errors():
    with pytest.raises(ConfigError, match="augment.jpeg_prob must lie in"):
        resolve_augment(AugmentConfig(preset="strong", jpeg_prob=1.5))
    with pytest.raises(ConfigError, match="augment.occluder_max must be >= 1"):
        resolve_augment(AugmentConfig(preset="strong", occluder_prob=0.5, occluder_max=0))
    # One option on top of a classic preset.
    cfg = resolve_augment(AugmentConfig(preset="strong", occluder_prob=1.0, occluder_max=2))
    assert cfg.rotation_deg == 15.0 and cfg.occluder_prob == 1.0 and cfg.color_prob == 0.0


def test_occluders_are_cut_from_the_other_images_and_stay_inside_the_crop():
    rng = np.random.default_rng(1)
    patch = np.zeros((64, 64, 3), np.uint8)
    sources = [np.full((30, 50, 3), 200, np.uint8), np.full((100, 100, 3), 90, np.uint8)]
    out = paste_occluders(patch, sources, rng)
    assert out.shape == patch.shape and out.dtype == np.uint8 and not patch.any()
    assert set(np.unique(out)) <= {0, 90, 200} and (out > 0).mean() > 0.01


def test_photometric_changes_keep_the_image_type_and_change_pixels():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)
    img = cv2.GaussianBlur(img, (0, 0), 2.0)
    for flags in ({"color": True}, {"blur": True}, {"noise": True}, {"jpeg": True}):
        out = photometric(img, AugmentDraw(**flags), np.random.default_rng(3))
        assert out.shape == img.shape and out.dtype == np.uint8
        assert np.abs(out.astype(int) - img).mean() > 0.3, flags
    same = photometric(img, AugmentDraw(), np.random.default_rng(3))
    np.testing.assert_array_equal(same, img)


def test_flare_brightens_around_a_glow_and_leaves_other_configs_draws_alone():
    img = np.full((96, 96, 3), 40, np.uint8)
    out = photometric(img, AugmentDraw(flare=True), np.random.default_rng(4))
    assert out.dtype == np.uint8 and out.shape == img.shape
    gain = out.astype(int) - img
    assert gain.min() >= 0 and gain.max() > 100  # only added light, a bright core
    assert (gain.mean(axis=2) > 30).mean() < 0.6  # a glow, not a white frame
    # flare on top of strong: drawn at its rate; the wild preset without flare draws what it always drew
    cfg = resolve_augment(AugmentConfig(preset="strong", flare_prob=0.3))
    assert abs(np.mean([draw(cfg, np.random.default_rng([1, i])).flare for i in range(2000)]) - 0.3) < 0.04
    wild = resolve_augment(AugmentConfig(preset="wild"))
    assert wild.flare_prob == 0.0 and not any(draw(wild, np.random.default_rng([0, i])).flare for i in range(200))
    with pytest.raises(ConfigError, match="augment.flare_prob must lie in"):
        resolve_augment(AugmentConfig(preset="strong", flare_prob=2.0))


def _record(tmp_path) -> PoseRecord:
    joints = np.array([[50, 180], [50, 150], [50, 120], [70, 120], [70, 150], [70, 180], [30, 100], [35, 80],
                       [45, 60], [75, 60], [85, 80], [90, 100], [60, 50], [60, 20]], dtype=np.float64)
    image = np.zeros((200, 120, 3), np.uint8)
    path = tmp_path / "p.png"
    cv2.imwrite(str(path), image)
    ones = np.ones(14, bool)
    return PoseRecord(path, joints, ones, ones, LSP14, "synthetic p")


@pytest.mark.parametrize("half", ["upper", "lower"])
def test_half_body_crop_frames_that_half(tmp_path, half):
    ds = PoseDataset([_record(tmp_path)], LSP14, SETTINGS)
    s = ds.sample(0, AugmentDraw(half_body=half))
    crop = s["meta"]["joints_crop_px"]
    inside = (crop >= 0).all(1) & (crop < 64).all(1)
    lower = np.array([j.endswith(("ankle", "knee", "hip")) for j in LSP14.joints])
    wanted = lower if half == "lower" else ~lower
    assert inside[wanted].all()
    assert not inside[~wanted].all()  # the other half is (partly) cut away
    full = ds.sample(0, AugmentDraw())
    assert s["meta"]["scale"][1] < full["meta"]["scale"][1]


def test_half_body_falls_back_to_the_whole_person_without_enough_joints(tmp_path):
    rec = _record(tmp_path)
    annotated = np.zeros(14, bool)
    annotated[[0, 1, 12, 13]] = True  # 2 lower joints: too few for a lower-body crop
    rec = PoseRecord(rec.image_path, rec.joints_px, annotated, annotated, LSP14, rec.entry)
    ds = PoseDataset([rec], LSP14, SETTINGS)
    a, b = ds.sample(0, AugmentDraw(half_body="lower")), ds.sample(0, AugmentDraw())
    np.testing.assert_allclose(a["meta"]["matrix"], b["meta"]["matrix"])


def test_tracker_crops_are_drawn_at_their_rate_and_leave_other_configs_draws_alone():
    cfg = resolve_augment(AugmentConfig(preset="strong", tracker_crop_prob=0.5))
    draws = [draw(cfg, np.random.default_rng([2, i])) for i in range(3000)]
    jittered = [d for d in draws if d.tracker_crop]
    assert abs(len(jittered) / len(draws) - 0.5) < 0.04
    shifts = np.array([d.crop_shift for d in jittered])
    zooms = np.array([d.crop_zoom for d in jittered])
    assert np.abs(shifts[:, 0]).max() <= 0.12 and shifts[:, 1].max() <= 0.2 and 0.75 <= zooms.min() <= zooms.max() <= 1.1
    head_cut = shifts[:, 1] > 0.12  # pushed down further than a plain shift can: the head is cut off
    assert 0.2 < head_cut.mean() < 0.35 and zooms[head_cut].max() <= 0.95
    # the same config without the option draws what it always drew
    plain = resolve_augment(AugmentConfig(preset="strong", occluder_prob=0.5, occluder_max=2))
    with_it = resolve_augment(AugmentConfig(preset="strong", occluder_prob=0.5, occluder_max=2, tracker_crop_prob=1.0))
    for i in range(100):
        a, b = draw(plain, np.random.default_rng([3, i])), draw(with_it, np.random.default_rng([3, i]))
        assert (a.rotation_deg, a.scale_mult, a.flip, a.occluders, a.extra_seed) == \
            (b.rotation_deg, b.scale_mult, b.flip, b.occluders, b.extra_seed)
        assert not a.tracker_crop and b.tracker_crop
    with pytest.raises(ConfigError, match="augment.tracker_crop_prob must lie in"):
        resolve_augment(AugmentConfig(preset="strong", tracker_crop_prob=-0.1))


def test_a_tracker_crop_moves_the_box_and_teaches_cut_off_joints_as_empty_maps(tmp_path):
    ds = PoseDataset([_record(tmp_path)], LSP14, SETTINGS)
    full = ds.sample(0, AugmentDraw())
    cut = ds.sample(0, AugmentDraw(crop_shift=(0.0, 0.3), crop_zoom=0.7))  # box pushed down: the head falls out
    crop = cut["meta"]["joints_crop_px"]
    outside = ~((crop >= 0).all(1) & (crop < 64).all(1))
    head = [LSP14.joints.index("head_top"), LSP14.joints.index("neck")]
    assert outside[head].all() and not outside.all()
    assert cut["meta"]["center"][1] > full["meta"]["center"][1] and cut["meta"]["scale"][1] < full["meta"]["scale"][1]
    # outside the crop: weight 1 with an empty map (the network learns "not here", not "anything goes")
    assert (cut["target_weight"].numpy() == 1).all()
    assert float(cut["target"][head].max()) < 1e-3
    # without the tracker crop a joint far outside is left out of the loss, as before
    plain = ds.sample(0, AugmentDraw(scale_mult=0.4))
    far = ~((plain["meta"]["joints_crop_px"] > -8).all(1) & (plain["meta"]["joints_crop_px"] < 72).all(1))
    assert far.any() and (plain["target_weight"].numpy()[far] == 0).all()

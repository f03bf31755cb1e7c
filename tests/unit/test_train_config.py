"""Typed configs: YAML and --set overrides, strict keys with a nearest-key hint, derived values."""

from __future__ import annotations

import pytest

from train.config import PRESETS, Config, ConfigError, load_config, resolve, scale_milestones


def test_defaults_resolve_to_the_default_model():
    cfg = resolve(Config())
    assert cfg.model.backbone == "mobilenet_v2"
    assert cfg.model.joint_names[0] == "right_ankle" and len(cfg.model.joint_names) == 14
    assert cfg.model.mean_rgb == [0.485, 0.456, 0.406] and cfg.model.channel_order == "RGB"


def test_unknown_key_in_yaml_names_key_and_nearest(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  lr_milestone: [3]\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*optim\.lr_milestone\b.*did you mean 'lr_milestones'"):
        load_config(path)


def test_unknown_override_names_nearest_key():
    with pytest.raises(ConfigError, match=r"train\.epoch\b.*did you mean 'epochs'"):
        load_config(None, ["train.epoch=3"])
    with pytest.raises(ConfigError, match=r"did you mean 'model'"):
        load_config(None, ["modle.backbone=resnet18"])


def test_unknown_key_inside_a_source_list(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  train:\n    - {kind: lsp, pth: data/lsp}\n")
    with pytest.raises(ConfigError, match=r"data\.train\[0\]\.pth.*did you mean 'path'"):
        load_config(path)


def test_types_are_checked_and_yaml_exponents_accepted(tmp_path):
    with pytest.raises(ConfigError, match="train.epochs must be an integer"):
        load_config(None, ["train.epochs=ten"])
    path = tmp_path / "lr.yaml"
    path.write_text("optim:\n  lr: 1e-4\n")  # PyYAML reads this as a string
    assert load_config(path).optim.lr == pytest.approx(1e-4)


def test_bad_choice_suggests_the_valid_one():
    with pytest.raises(ConfigError, match="did you mean 'resnet50'"):
        resolve(load_config(None, ["model.backbone=resnet55"]))
    with pytest.raises(ConfigError, match="did you mean 'strong'"):
        resolve(load_config(None, ["augment.preset=strng"]))


def test_milestones_scale_with_the_epoch_count():
    assert scale_milestones([90, 120], 140, 140) == [90, 120]
    assert scale_milestones([90, 120], 140, 40) == [26, 34]
    assert resolve(load_config(None, ["train.epochs=14"])).optim.scaled_milestones == [9, 12]


def test_augment_presets_follow_table_1_and_overrides_win():
    assert (PRESETS["normal"].rotation_deg, PRESETS["normal"].scale_factor) == (0.0, 0.01)
    assert (PRESETS["weak"].rotation_deg, PRESETS["weak"].scale_factor) == (5.0, 0.06)
    assert (PRESETS["strong"].rotation_deg, PRESETS["strong"].scale_factor) == (15.0, 0.12)
    assert (PRESETS["simple_baselines"].rotation_deg, PRESETS["simple_baselines"].scale_factor) == (30.0, 0.25)
    assert all(PRESETS[p].flip_prob == 0.5 for p in ("normal", "weak", "strong", "simple_baselines"))
    cfg = resolve(load_config(None, ["augment.preset=weak", "augment.rotation_deg=7"]))
    assert (cfg.augment.rotation_deg, cfg.augment.scale_factor, cfg.augment.flip_prob) == (7.0, 0.06, 0.5)


def test_count_and_ratio_cannot_be_mixed():
    with pytest.raises(ConfigError, match="either count or ratio"):
        resolve(load_config(None, ["data.train=[{kind: lsp, count: 5}, {kind: lspet, path: data/lspet, ratio: 0.5}]"]))


def test_all_shipped_configs_load():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "train" / "configs"
    files = sorted(folder.glob("*.yaml"))
    assert len(files) >= 9
    for f in files:
        resolve(load_config(f))

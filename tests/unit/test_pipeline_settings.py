"""Runtime settings: defaults in code, YAML overrides, unknown keys and bad values refused by name."""

from __future__ import annotations

import pytest
import yaml

from rehab.settings import AnonymizeSettings, RuntimeSettings, SmoothingSettings


def test_defaults_are_safe():
    s = RuntimeSettings()
    assert s.anonymize.enabled and s.smoothing.enabled and s.roi.enabled
    assert 0 < s.scores.joint_min_score < 1


def test_round_trip_through_yaml(tmp_path):
    s = RuntimeSettings().with_overrides(smoothing={"beta": 2.5}, anonymize={"face_detector": False})
    path = tmp_path / "runtime.yaml"
    path.write_text(yaml.safe_dump(s.to_dict()))
    assert RuntimeSettings.from_yaml(path) == s
    partial = tmp_path / "partial.yaml"
    partial.write_text("smoothing:\n  min_cutoff_hz: 2.0\n")
    loaded = RuntimeSettings.from_yaml(partial)
    assert loaded.smoothing.min_cutoff_hz == 2.0 and loaded.smoothing.beta == SmoothingSettings().beta
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert RuntimeSettings.from_yaml(empty) == RuntimeSettings()


def test_unknown_keys_are_named():
    with pytest.raises(ValueError, match=r"unknown key settings\.smoothnes; did you mean 'smoothing'"):
        RuntimeSettings.from_dict({"smoothnes": {}})
    with pytest.raises(ValueError, match=r"unknown key settings\.anonymize\.blur"):
        RuntimeSettings.from_dict({"anonymize": {"blur": 3}})
    with pytest.raises(ValueError, match="unknown settings section"):
        RuntimeSettings().with_overrides(colours={})
    with pytest.raises(ValueError, match="must be a mapping"):
        RuntimeSettings.from_dict({"roi": 3})
    with pytest.raises(ValueError, match=r"settings\.roi\.min_joints must be an integer"):
        RuntimeSettings.from_dict({"roi": {"min_joints": "four"}})
    with pytest.raises(ValueError, match=r"settings\.roi: .*min_joints must be >= 2"):
        RuntimeSettings.from_dict({"roi": {"min_joints": 1}})


def test_bad_values_are_named(tmp_path):
    with pytest.raises(ValueError, match="min_cutoff_hz must be > 0"):
        SmoothingSettings(min_cutoff_hz=0)
    with pytest.raises(ValueError, match="joint_min_score must be in"):
        RuntimeSettings.from_dict({"scores": {"joint_min_score": 1.5}})
    with pytest.raises(ValueError, match="blocks_across_box must be >= 1"):
        AnonymizeSettings(blocks_across_box=0)
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        RuntimeSettings.from_yaml(tmp_path / "nope.yaml")
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="list.yaml must hold a mapping of keys, got list"):
        RuntimeSettings.from_yaml(listy)


def test_settings_are_frozen():
    with pytest.raises(AttributeError):
        RuntimeSettings().anonymize.enabled = False  # the off switch goes through an explicit new object

"""The ablation study's plan: arms = baseline + overrides, validation held out of the training data only, and
config digests that stay put when options are added (at their old value)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from train.config import Config, ConfigError, config_from_saved, resolve, to_dict
from train.studies.config import (
    AblationArm,
    load_study_config,
    plan_arms,
    resolve_domains,
    validate,
)
from train.studies.runner import config_digest
from train.studies.study import study_config_from_cli


def _plans(tmp_path: Path, **changes):
    cfg = study_config_from_cli("ablation", overrides=[f"data.root={tmp_path}"])
    for key, value in changes.items():
        setattr(cfg, key, value)
    validate(cfg)
    return cfg, plan_arms(cfg, resolve_domains(cfg, tmp_path))


def test_every_arm_trains_without_the_validation_images_and_lsp_test_is_never_read(tmp_path):
    cfg, plans = _plans(tmp_path)
    names = [p.name for p in plans]
    assert names[0] == "baseline" and {"input256", "head256"} <= set(names)
    for plan in plans:
        train = plan.train
        lspet, lsp = train.data.train
        assert (lspet.kind, lspet.stop, lspet.start) == ("lspet", -cfg.source_holdout, None)
        assert (lsp.kind, lsp.split, lsp.stop, lsp.start) == ("lsp", "train", -cfg.target_holdout, None)
        assert [(v.kind, v.split, v.start) for v in train.data.val] == [("lsp", "train", -cfg.target_holdout)]
        assert train.data.epoch_size == cfg.budget_images // cfg.epochs and train.train.seed == 0
        assert all(s.split != "test" for s in train.data.train + train.data.val)
    domains = resolve_domains(cfg, tmp_path)
    assert (domains.source_test.start, domains.target_test.split, domains.target_test.start) == (-500, "train", -200)


def test_arms_differ_from_the_baseline_only_in_their_overrides(tmp_path):
    _, plans = _plans(tmp_path)
    by_name = {p.name: resolve(p.train) for p in plans}
    base = to_dict(by_name["baseline"])
    for name, changed in (("input256", {("model", "input_size"), ("model", "heatmap_size")}),
                          ("head256", {("model", "deconv_filters")})):
        arm = to_dict(by_name[name])
        diff = {(sec, key) for sec in base for key in base[sec] if base[sec][key] != arm[sec][key]}
        assert diff == changed, name
    assert by_name["input256"].model.input_size == [256, 256]


def test_bad_ablation_arms_are_refused_with_a_clear_message(tmp_path):
    with pytest.raises(ConfigError, match="unknown key model.deconv_filter"):
        _plans(tmp_path, ablation_arms=[AblationArm("typo", "", ["model.deconv_filter=256"])])
    with pytest.raises(ConfigError, match="baseline's name or given twice"):
        _plans(tmp_path, ablation_arms=[AblationArm("baseline", "", ["model.sigma=3"])])
    with pytest.raises(ConfigError, match="changes nothing"):
        _plans(tmp_path, ablation_arms=[AblationArm("empty", "", [])])
    cfg = load_study_config(None, ["kind=ablation", "source=mpii"])
    with pytest.raises(ConfigError, match="source must be lspet"):
        validate(cfg)


def test_a_config_saved_before_an_option_existed_keeps_its_digest():
    cfg = Config()
    old = to_dict(resolve(cfg))
    for section, key in (("model", "heatmap_encoding"), ("model", "heatmap_decoding"), ("optim", "lr_schedule"),
                         ("augment", "occluder_prob"), ("augment", "jpeg_prob"), ("augment", "half_body_prob")):
        del old[section][key]
    assert config_digest(config_from_saved(old)) == config_digest(cfg)
    for section, key, value in (("model", "heatmap_decoding", "dark"), ("optim", "lr_schedule", "cosine"),
                                ("augment", "preset", "wild")):
        changed = config_from_saved(to_dict(cfg))
        setattr(getattr(changed, section), key, value)
        assert config_digest(changed) != config_digest(cfg), key


def test_the_clean_protocol_config_trains_on_no_validation_image_and_reads_no_lsp_test():
    from train.config import REPO_ROOT, load_config

    cfg = resolve(load_config(REPO_ROOT / "train/configs/default_mnv2_clean.yaml"))
    train = {(s.kind, s.split): (s.start, s.stop) for s in cfg.data.train}
    val = {(s.kind, s.split): (s.start, s.stop) for s in cfg.data.val}
    assert train == {("lspet", "all"): (None, -500), ("lsp", "train"): (None, -200)}
    assert val == {("lspet", "all"): (-500, None), ("lsp", "train"): (-200, None)}


def test_evaluate_only_arms_reuse_a_trained_arm_and_may_change_decoding_only(tmp_path):
    cfg, plans = _plans(tmp_path)
    dark = next(p for p in plans if p.name == "dark_decode")
    assert dark.evaluate_from == "baseline" and dark.decode_set == ("model.heatmap_decoding=dark",)
    cfg.arms = ["dark_decode"]
    assert [p.name for p in plan_arms(cfg, resolve_domains(cfg, tmp_path))] == ["baseline", "dark_decode"]
    with pytest.raises(ConfigError, match="only evaluates a trained model"):
        _plans(tmp_path, ablation_arms=[AblationArm("x", "", ["model.sigma=3"], evaluate_arm="baseline")])
    with pytest.raises(ConfigError, match="not a trained arm listed before it"):
        _plans(tmp_path, ablation_arms=[AblationArm("x", "", ["eval.flip_test=true"], evaluate_arm="later")])

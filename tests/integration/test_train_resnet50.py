"""The paper preset (ResNet-50, 3 x 256 x 4x4 deconvolutions, 256x256, MPII-16) takes a training step."""

from __future__ import annotations

from pathlib import Path

import torch

from train.config import load_config, resolve
from train.engine import fit, seed_everything
from train.model import build_model

PAPER = Path(__file__).resolve().parents[2] / "train" / "configs" / "resnet50_paper.yaml"


def test_paper_preset_takes_one_training_step(shared_dir, require_data, tmp_path):
    require_data(shared_dir / "data/fixtures/mpii/test_mpii.json")
    # No ImageNet ResNet weights and no MPII images here: random init, the 5 MPII fixture images, batch 2.
    overrides = [f"data.root={shared_dir}", "model.backbone_init=random",
                 "data.train=[{kind: mpii_json, path: data/fixtures/mpii/test_mpii.json}]", "data.val=[]",
                 "data.num_workers=0", "train.batch_size=2", "train.epochs=1", "train.max_steps_per_epoch=1",
                 "train.progress=false", "train.threads=2"]
    cfg = load_config(PAPER, overrides)
    resolved = resolve(cfg)
    assert (resolved.model.backbone, resolved.model.deconv_layers, resolved.model.deconv_filters,
            resolved.model.deconv_kernel) == ("resnet50", 3, 256, 4)
    assert resolved.model.input_size == [256, 256] and len(resolved.model.joint_names) == 16
    assert resolved.augment.preset == "simple_baselines" and resolved.optim.scaled_milestones == [1]
    fit(cfg, tmp_path / "run")
    seed_everything(resolved.train.seed)
    initial = build_model(resolved.model, init_backbone=False).state_dict()
    stepped = torch.load(tmp_path / "run" / "last.pt", weights_only=False)["model"]
    # One Adam step from the same initialisation moves each weight by at most about the LR (1e-3).
    moved = (initial["final.weight"] - stepped["final.weight"]).abs().max()
    assert 0 < moved <= 1.1e-3
    assert all(torch.isfinite(v).all() for v in stepped.values() if v.is_floating_point())

"""Network construction: shapes, head configuration, backbone initialisation errors, checkpoint loading."""

from __future__ import annotations

import pytest
import torch
import torchvision

from train.config import ConfigError, ModelConfig, load_config, resolve
from train.model import build_model, load_checkpoint

torch.set_num_threads(1)


def _model_cfg(**overrides) -> ModelConfig:
    sets = [f"model.{k}={v}" for k, v in overrides.items()]
    return resolve(load_config(None, sets)).model


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "resnet18"])
def test_heatmap_shape(backbone):
    cfg = _model_cfg(backbone=backbone, backbone_init="random", input_size="[64, 96]", heatmap_size="[8, 12]",
                     deconv_layers=2, deconv_filters=16)
    model = build_model(cfg).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 96, 64))
    assert out.shape == (1, 14, 12, 8)
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in model.head) == 2


@pytest.mark.parametrize("kernel", [2, 3, 4])
def test_deconv_kernels_double_the_size(kernel):
    cfg = _model_cfg(backbone="resnet18", backbone_init="random", input_size="[64, 64]", heatmap_size="[16, 16]",
                     deconv_kernel=kernel, deconv_filters=8)
    with torch.no_grad():
        assert build_model(cfg)(torch.zeros(1, 3, 64, 64)).shape[-2:] == (16, 16)


def test_geometry_mismatch_is_a_clear_error():
    cfg = _model_cfg(backbone_init="random", input_size="[192, 192]", heatmap_size="[64, 64]")
    with pytest.raises(ConfigError, match="gives heatmaps"):
        build_model(cfg)


def test_missing_weights_file_and_unavailable_imagenet_are_errors(tmp_path, monkeypatch):
    cfg = _model_cfg(backbone_init="file", backbone_weights=str(tmp_path / "absent.pth"))
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        build_model(cfg)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # an empty cache
    cfg = _model_cfg(backbone="resnet18", backbone_init="imagenet")
    with pytest.raises(FileNotFoundError, match="not on this machine.*allow_download"):
        build_model(cfg)


def test_weights_from_a_local_file_are_loaded(tmp_path):
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save(reference.state_dict(), path)
    cfg = _model_cfg(backbone="resnet18", backbone_init="file", backbone_weights=str(path),
                     input_size="[64, 64]", heatmap_size="[8, 8]", deconv_layers=2)
    model = build_model(cfg)
    assert torch.equal(model.backbone[0].weight, reference.conv1.weight)
    torch.save({"conv1.weight": torch.zeros(3)}, tmp_path / "bad.pth")
    cfg.backbone_weights = str(tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="do not fit"):
        build_model(cfg)


def test_load_checkpoint_rebuilds_the_network(tmp_path):
    from train.config import to_dict

    cfg = resolve(load_config(None, ["model.backbone_init=random", "model.input_size=[64, 64]",
                                     "model.heatmap_size=[16, 16]", "model.deconv_filters=8"]))
    model = build_model(cfg.model).eval()
    path = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict(), "config": to_dict(cfg), "epoch": 0}, path)
    loaded, config, ckpt = load_checkpoint(path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert config.model.input_size == [64, 64] and config.model.std_rgb == [0.229, 0.224, 0.225]
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")

"""Simple Baselines pose network: a ResNet or MobileNetV2 backbone and a deconvolution head.

Building the network from a checkpoint (what export does)::

    from train.model import load_checkpoint
    model, config, checkpoint = load_checkpoint("runs/default/best.pt")   # model in eval mode, on the CPU
    # config.model holds input_size (w, h), heatmap_size, joint_names, mean_rgb, std_rgb,
    # channel_order ("RGB"), layout ("NCHW") and pixel_range: input = (rgb / pixel_range - mean) / std.

or, from a config alone, ``build_model(config.model, init_backbone=False)`` and ``load_state_dict``.
The output is (N, K, heatmap_h, heatmap_w) heatmaps decoded by ``rehab.core.heatmaps.decode`` with
stride input_w / heatmap_w.
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path

import torch
import torchvision
from torch import nn

from train.config import Config, ConfigError, ModelConfig, config_from_saved

logger = logging.getLogger(__name__)

# Output stride of every supported backbone (ResNet layer4, MobileNetV2 features).
BACKBONE_STRIDE = 32
# Simple Baselines initialises the head with this Gaussian standard deviation.
HEAD_INIT_STD = 0.001

_RESNET_WEIGHTS = {
    "resnet18": "ResNet18_Weights",
    "resnet34": "ResNet34_Weights",
    "resnet50": "ResNet50_Weights",
    "resnet101": "ResNet101_Weights",
    "resnet152": "ResNet152_Weights",
}


def _torchvision_classifier(name: str) -> nn.Module:
    if name == "mobilenet_v2":
        return torchvision.models.mobilenet_v2(weights=None)
    if name in _RESNET_WEIGHTS:
        return getattr(torchvision.models, name)(weights=None)
    raise ConfigError(f"unknown backbone {name!r}; known: mobilenet_v2, {', '.join(_RESNET_WEIGHTS)}")


def _imagenet_weights_enum(name: str):
    if name == "mobilenet_v2":
        return torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1
    return getattr(torchvision.models, _RESNET_WEIGHTS[name]).IMAGENET1K_V1


def _imagenet_state_dict(name: str, allow_download: bool) -> dict:
    """torchvision's ImageNet weights from the local torch hub cache; a download only when allowed."""
    weights = _imagenet_weights_enum(name)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    if cached.is_file():
        logger.info("backbone %s: ImageNet weights from %s", name, cached)
        return torch.load(cached, map_location="cpu", weights_only=True)
    if allow_download:
        logger.info("backbone %s: downloading ImageNet weights from %s", name, weights.url)
        return weights.get_state_dict(progress=True)
    raise FileNotFoundError(
        f"ImageNet weights for {name} are not on this machine (looked for {cached}). Put the file there, "
        f"set model.backbone_init=file with model.backbone_weights=PATH, set model.allow_download=true to let "
        f"torchvision download {weights.url}, or use model.backbone_init=random")


def _file_state_dict(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights file not found: {path} (model.backbone_weights)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for damaged or foreign files
        raise ValueError(f"cannot read backbone weights {path}: {type(exc).__name__}: {exc}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"backbone weights {path} hold a {type(state).__name__}, not a state dict")
    return state


def _load_classifier_weights(classifier: nn.Module, state: dict, origin: str) -> None:
    try:
        result = classifier.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # tensor shapes that do not match
        raise ValueError(f"backbone weights {origin} do not fit this backbone: {exc}") from None
    # The classifier head (fc / classifier) is dropped afterwards, so only body keys must match.
    missing = [k for k in result.missing_keys if not k.startswith(("fc.", "classifier."))]
    if missing or result.unexpected_keys:
        raise ValueError(f"backbone weights {origin} do not fit this backbone: missing {missing[:5]}"
                         f"{'...' if len(missing) > 5 else ''}, unexpected {result.unexpected_keys[:5]}")


def build_backbone(cfg: ModelConfig, init: str, weights_path: Path | None = None) -> tuple[nn.Module, int]:
    """(feature extractor at stride 32, its output channels); ``init`` is imagenet | file | random."""
    classifier = _torchvision_classifier(cfg.backbone)
    if init == "imagenet":
        _load_classifier_weights(classifier, _imagenet_state_dict(cfg.backbone, cfg.allow_download),
                                 f"ImageNet {cfg.backbone}")
    elif init == "file":
        if weights_path is None:
            raise ValueError("backbone_init=file needs model.backbone_weights")
        _load_classifier_weights(classifier, _file_state_dict(weights_path), str(weights_path))
        logger.info("backbone %s: weights from %s", cfg.backbone, weights_path)
    elif init != "random":
        raise ConfigError(f"model.backbone_init must be imagenet, file or random, got {init!r}")
    if cfg.backbone == "mobilenet_v2":
        if cfg.backbone_drop_last_conv:
            trimmed = classifier.features[:-1]
            return trimmed, trimmed[-1].out_channels
        return classifier.features, classifier.last_channel
    body = nn.Sequential(classifier.conv1, classifier.bn1, classifier.relu, classifier.maxpool,
                         classifier.layer1, classifier.layer2, classifier.layer3, classifier.layer4)
    return body, classifier.fc.in_features


def _deconv_padding(kernel: int) -> tuple[int, int]:
    """(padding, output_padding) that make a stride-2 transposed convolution exactly double the size."""
    if kernel == 4:
        return 1, 0
    if kernel == 3:
        return 1, 1
    if kernel == 2:
        return 0, 0
    raise ConfigError(f"model.deconv_kernel must be 2, 3 or 4, got {kernel}")


class PresenceHead(nn.Module):
    """Features (N, C, h, w) -> (N, 1) logit of "a person is in this crop".

    The features are the backbone's or the last deconvolution's (model.presence_input), optionally passed through
    a 1x1 convolution + ReLU (model.presence_conv) first. Global average pooling (how much of the crop looks like body parts), optionally concatenated with global
    max pooling (the strongest single response: a small person fills few of the 6x6 cells), then one hidden
    layer. No BatchNorm: it is trained while the pose network's statistics stay frozen.
    """

    def __init__(self, channels: int, pool: str, hidden: int, conv: int = 0, tower: nn.Module | None = None) -> None:
        super().__init__()
        self.tower = tower  # its own copy of the backbone's last stages (PoseNet feeds it the shared stage)
        self.use_max = pool == "avg_max"
        self.conv = nn.Sequential(nn.Conv2d(channels, conv, 1), nn.ReLU(inplace=True)) if conv > 0 else None
        channels = conv if conv > 0 else channels
        features = channels * (2 if self.use_max else 1)
        if hidden > 0:
            self.mlp = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))
        else:
            self.mlp = nn.Sequential(nn.Linear(features, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.conv is not None:
            features = self.conv(features)
        pooled = features.mean(dim=(2, 3))
        if self.use_max:
            pooled = torch.cat([pooled, features.amax(dim=(2, 3))], dim=1)
        return self.mlp(pooled.float() if pooled.dtype == torch.bfloat16 else pooled)


class PoseNet(nn.Module):
    """backbone -> deconv_layers x (ConvTranspose 2x up, BN, ReLU) -> 1x1 conv to K heatmaps; optionally a
    presence head on the backbone features (``forward(x, with_presence=True)`` -> (heatmaps, logits (N, 1)))."""

    def __init__(self, backbone: nn.Module, backbone_channels: int, cfg: ModelConfig, num_joints: int) -> None:
        super().__init__()
        self.backbone = backbone
        layers: list[nn.Module] = []
        channels = backbone_channels
        padding, output_padding = _deconv_padding(cfg.deconv_kernel)
        for _ in range(cfg.deconv_layers):
            layers += [
                nn.ConvTranspose2d(channels, cfg.deconv_filters, cfg.deconv_kernel, stride=2, padding=padding,
                                   output_padding=output_padding, bias=False),
                nn.BatchNorm2d(cfg.deconv_filters),
                nn.ReLU(inplace=True),
            ]
            channels = cfg.deconv_filters
        self.head = nn.Sequential(*layers)
        if cfg.final_kernel not in (1, 3):
            raise ConfigError(f"model.final_kernel must be 1 or 3, got {cfg.final_kernel}")
        self.final = nn.Conv2d(channels, num_joints, cfg.final_kernel, padding=cfg.final_kernel // 2)
        self.presence_input = cfg.presence_input
        self.tower_split = 0
        tower = None
        if cfg.presence_head and cfg.presence_tower_blocks:
            if not isinstance(backbone, nn.Sequential) or cfg.presence_tower_blocks >= len(backbone):
                raise ConfigError(f"model.presence_tower_blocks={cfg.presence_tower_blocks}: the {cfg.backbone} "
                                  f"backbone has {len(backbone) if isinstance(backbone, nn.Sequential) else 'no'} stages")
            self.tower_split = len(backbone) - cfg.presence_tower_blocks
            tower = copy.deepcopy(backbone[self.tower_split:])
        self.presence = (PresenceHead(channels if cfg.presence_input == "deconv" else backbone_channels,
                                      cfg.presence_pool, cfg.presence_hidden, cfg.presence_conv, tower)
                         if cfg.presence_head else None)
        self._init_head()

    @property
    def has_presence(self) -> bool:
        return self.presence is not None

    def _init_head(self) -> None:
        for module in list(self.head.modules()) + [self.final]:
            if isinstance(module, (nn.ConvTranspose2d, nn.Conv2d)):
                nn.init.normal_(module.weight, std=HEAD_INIT_STD)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def init_presence_tower(self) -> None:
        """Copy the backbone's last stages into the presence tower (after the pose weights were loaded)."""
        if self.presence is not None and self.presence.tower is not None:
            self.presence.tower.load_state_dict(self.backbone[self.tower_split:].state_dict())

    def forward(self, x: torch.Tensor, with_presence: bool = False):
        """Heatmaps (N, K, H, W); with ``with_presence`` (needs the head) the tuple (heatmaps, logits (N, 1))."""
        if with_presence and self.tower_split:
            shared = self.backbone[:self.tower_split](x)
            features = self.backbone[self.tower_split:](shared)
        else:
            features = self.backbone(x)
        deconv = self.head(features)
        heatmaps = self.final(deconv)
        if not with_presence:
            return heatmaps
        if self.presence is None:
            raise ValueError("this model has no presence head (model.presence_head is false)")
        if self.tower_split:
            return heatmaps, self.presence(self.presence.tower(shared))
        return heatmaps, self.presence(deconv if self.presence_input == "deconv" else features)


class WithPresence(nn.Module):
    """A PoseNet whose plain call returns (heatmaps, presence logits): the two-output graph export writes."""

    def __init__(self, net: PoseNet) -> None:
        super().__init__()
        if not net.has_presence:
            raise ValueError("WithPresence needs a PoseNet with a presence head")
        self.net = net

    def forward(self, x: torch.Tensor):
        return self.net(x, with_presence=True)


def check_geometry(cfg: ModelConfig) -> None:
    """The heatmap size must be what the backbone stride and the deconvolutions produce."""
    up = 2 ** cfg.deconv_layers
    expected = [s // BACKBONE_STRIDE * up for s in cfg.input_size]
    if any(s % BACKBONE_STRIDE for s in cfg.input_size) or list(cfg.heatmap_size) != expected:
        raise ConfigError(
            f"model.input_size {cfg.input_size} with {cfg.deconv_layers} deconvolutions gives heatmaps "
            f"{expected} (input must be a multiple of {BACKBONE_STRIDE}); model.heatmap_size is {cfg.heatmap_size}")


def build_model(model_cfg: ModelConfig, init_backbone: bool = True, data_root: str | os.PathLike[str] = "") -> PoseNet:
    """The network of ``model_cfg``; ``init_backbone=False`` skips loading backbone weights (random init),
    as when the weights come from a checkpoint afterwards. ``backbone_weights`` resolves against ``data_root``."""
    check_geometry(model_cfg)
    num_joints = len(model_cfg.joint_names)
    if num_joints == 0:
        raise ConfigError("model.joint_names is empty; resolve the config first (train.config.resolve)")
    weights_path = None
    if model_cfg.backbone_weights:
        p = Path(model_cfg.backbone_weights)
        weights_path = p if p.is_absolute() or not data_root else Path(data_root) / p
    init = model_cfg.backbone_init if init_backbone else "random"
    backbone, channels = build_backbone(model_cfg, init, weights_path)
    return PoseNet(backbone, channels, model_cfg, num_joints)


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> tuple[PoseNet, Config, dict]:
    """(model in eval mode, resolved Config, the raw checkpoint dict) from a last.pt / best.pt."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:
        raise ValueError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise ValueError(f"{path} is not a training checkpoint (needs 'model' and 'config' entries)")
    config = config_from_saved(ckpt["config"])
    model = build_model(config.model, init_backbone=False)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, config, ckpt

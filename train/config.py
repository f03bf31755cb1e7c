"""Typed training configuration: dataclass defaults in code, YAML files and ``key=value`` overrides on top.

Every section is a plain dataclass. ``load_config`` reads a YAML file (optional), applies dotted
``--set`` overrides, rejects unknown keys naming the nearest valid one, and returns a ``Config``.
``resolve`` fills the values that depend on others (augmentation preset values, scaled LR milestones,
joint names, the data root) so that the config saved with a checkpoint says exactly what ran.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rehab.core.heatmaps import DECODINGS, ENCODINGS
from rehab.core.skeleton import get_joint_set

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR_ENV = "REHAB_SHARED_DIR"

# torchvision's ImageNet normalisation, RGB order; the network input is (x / 255 - mean) / std, NCHW.
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)

SOURCE_KINDS = ("lsp", "lspet", "mpii", "mpii_json", "coco")
CROP_MODES = ("person", "full_image")
BACKBONES = ("mobilenet_v2", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
BACKBONE_INITS = ("imagenet", "file", "random")
IMAGE_CACHE_MODES = ("none", "encoded", "decoded")
AUG_DISTRIBUTIONS = ("uniform", "normal")
DEVICES = ("auto", "cpu", "cuda")
VAL_METRICS = ("pck", "pckh")
LR_SCHEDULES = ("multistep", "cosine")


def default_shared_dir() -> Path:
    """$REHAB_SHARED_DIR, else <repo>/../shared."""
    env = os.environ.get(SHARED_DIR_ENV)
    return Path(env) if env else REPO_ROOT.parent / "shared"


@dataclass
class SourceConfig:
    """One dataset source. Paths are relative to ``data.root`` unless absolute.

    kind: lsp | lspet | mpii (the json.gz) | mpii_json (HRNet-style train/valid json) | coco.
    split: lsp: train (im0001-im1000) | test (im1001-im2000) | all; mpii: train | valid | all.
    start, stop: keep only entries [start, stop) of the split, as a Python slice (negative counts from the end),
        before ``limit``; e.g. LSPET stop=-500 for training and start=-500 for a held-out test slice.
    limit: keep this many entries, evenly spaced over the split (deterministic), e.g. 300 validation images.
    count: per-source count in a mixed dataset (a fixed seeded subset, or drawn with replacement when larger).
    ratio: per-source share of each epoch in a mixed dataset (use either count or ratio for all sources).
    crop: person (center/scale, else the joints' box with a margin) | full_image (letterbox the whole image).
    """

    kind: str = "lsp"
    path: str = "data/lsp"
    split: str = "train"
    ann_file: str = ""
    image_dir: str = ""
    start: int | None = None
    stop: int | None = None
    limit: int | None = None
    count: int | None = None
    ratio: float | None = None
    crop: str = "person"


@dataclass
class DataConfig:
    root: str = ""  # "" = $REHAB_SHARED_DIR, else <repo>/../shared
    train: list[SourceConfig] = field(default_factory=lambda: [SourceConfig(kind="lspet", path="data/lspet", split="all"),
                                                             SourceConfig(kind="lsp", path="data/lsp", split="train")])
    val: list[SourceConfig] = field(default_factory=lambda: [SourceConfig(kind="lsp", path="data/lsp", split="test",
                                                                          limit=300, crop="full_image")])
    epoch_size: int | None = None  # samples per epoch of a ratio-mixed dataset (default: all sources' sizes)
    image_cache: str = "none"  # none | encoded (file bytes in memory) | decoded (pixels in memory)
    num_workers: int = 0
    box_margin: float = 0.15  # joints' box grown by this fraction of its size per side
    box_padding: float = 1.25  # person box enlarged by this factor (Simple Baselines)
    mpii_center_shift: float = 15.0  # MPII: center moved down by this many px per unit scale (HRNet)


@dataclass
class AugmentConfig:
    """Table 1 presets; any value set here overrides the preset's.

    distribution uniform: rotation ~ U(-rot, rot), scale ~ U(1 - s, 1 + s).
    distribution normal (Simple Baselines): rotation ~ N(0, rot) clipped to +-2 rot, scale ~ N(1, s) clipped to 1 +- s.
    Augmentation for the wild (probabilities per sample, 0 = off; magnitudes in train/augment.py):
    half_body_prob: crop the upper or the lower body only (its annotated joints' box, as HRNet);
    occluder_prob: paste 1 to occluder_max rectangles cut from other training images over the crop;
    color_prob (brightness, contrast, saturation), blur_prob (Gaussian), noise_prob (Gaussian), jpeg_prob
    (re-encoded at a low quality).
    """

    preset: str = "strong"
    rotation_deg: float | None = None
    scale_factor: float | None = None
    flip_prob: float | None = None
    rotation_prob: float | None = None
    distribution: str | None = None
    half_body_prob: float | None = None
    occluder_prob: float | None = None
    occluder_max: int | None = None
    color_prob: float | None = None
    blur_prob: float | None = None
    noise_prob: float | None = None
    jpeg_prob: float | None = None


@dataclass
class ModelConfig:
    backbone: str = "mobilenet_v2"
    backbone_init: str = "file"  # imagenet (torchvision cache) | file | random
    backbone_weights: str = "weights/mobilenet_v2-b0353104.pth"  # for init=file; relative to data.root
    allow_download: bool = False  # imagenet init may download through torchvision only when this is set
    deconv_layers: int = 3
    deconv_filters: int = 128
    deconv_kernel: int = 4
    final_kernel: int = 1
    # MobileNetV2 only: end the backbone at its 320-channel block, without the final 1x1 expansion to 1280
    # channels; the head then starts from 320 channels (measured: ~20% less CPU latency at 192x192).
    backbone_drop_last_conv: bool = False
    input_size: list[int] = field(default_factory=lambda: [192, 192])  # (w, h)
    heatmap_size: list[int] = field(default_factory=lambda: [48, 48])  # (w, h)
    sigma: float = 2.0
    # The heatmap codec (rehab.core.heatmaps): coordinate convention standard | udp (unbiased data processing)
    # and sub-pixel decoding quarter | dark; stored with the weights, so export and runtime decode the same way.
    heatmap_encoding: str = "standard"
    heatmap_decoding: str = "quarter"
    joint_set: str = "lsp14"
    # Preprocessing facts, stored so that export and runtime read them instead of hard-coding them.
    joint_names: list[str] = field(default_factory=list)  # filled by resolve()
    mean_rgb: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN_RGB))
    std_rgb: list[float] = field(default_factory=lambda: list(IMAGENET_STD_RGB))
    channel_order: str = "RGB"
    layout: str = "NCHW"
    pixel_range: float = 255.0  # input is (pixels / pixel_range - mean) / std


@dataclass
class OptimConfig:
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_factor: float = 0.1
    # Simple Baselines decays at 90 and 120 of 140 epochs; milestones scale to the run's epoch count.
    lr_milestones: list[int] = field(default_factory=lambda: [90, 120])
    lr_milestones_base_epochs: int = 140
    scaled_milestones: list[int] = field(default_factory=list)  # filled by resolve()
    # multistep: x lr_factor at each milestone; cosine: lr x (1 + cos(pi x epoch / epochs)) / 2 per epoch
    # (milestones unused), from the full LR in the first epoch down to a few % of it in the last.
    lr_schedule: str = "multistep"


@dataclass
class TrainConfig:
    epochs: int = 40
    batch_size: int = 32
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # fp16 autocast + grad scaling on CUDA
    cpu_bf16: bool = True  # bf16 autocast on CPU
    channels_last: bool = True
    threads: int = 2  # torch intra-op threads (CPU)
    val_every: int = 1
    max_steps_per_epoch: int | None = None  # cap for smoke tests
    # BatchNorm layers in eval mode while training: running statistics stay those of the checkpoint (their scale
    # and shift still learn). For fine-tuning on a small set, where re-estimated statistics shift every layer.
    freeze_bn: bool = False
    progress: bool = True
    tensorboard: bool = True  # used when the tensorboard package is installed


@dataclass
class EvalConfig:
    flip_test: bool = False
    batch_size: int = 32
    pck_alpha: float = 0.2
    pckh_alpha: float = 0.5
    limb_joints_only: bool = True  # PCK@0.2 mean over the 12 LSP limb joints
    val_metric: str = "pck"  # per-epoch validation metric and best.pt criterion: pck (torso) | pckh (head)


@dataclass
class FinetuneConfig:
    checkpoint: str = ""  # the source model (a best.pt/last.pt)
    source_val: list[SourceConfig] = field(default_factory=list)  # the source domain's evaluation split


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)


# ----------------------------------------------------------------------------------------------
# dict <-> dataclass with strict keys


class ConfigError(ValueError):
    """A config file or override that does not fit the schema."""


def _nearest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.4)
    return f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(valid)}"


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _coerce(value: Any, tp: Any, where: str) -> Any:
    tp, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where} may not be null")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    origin = typing.get_origin(tp)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, str):
            # PyYAML reads 1e-4 (no dot) as a string, a YAML 1.1 quirk; accept it as the number it means.
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {tp}")


def from_dict(cls: type, data: Any, where: str = "config") -> Any:
    """Build dataclass ``cls`` from a mapping; unknown keys raise naming the nearest valid key."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping of keys to values, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(f"unknown config key {where}.{key}{_nearest(str(key), names)}")
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}")
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def set_dotted(data: dict, dotted: str, value: Any, cls: type) -> None:
    parts = dotted.split(".")
    node, node_cls = data, cls
    for i, part in enumerate(parts):
        names = [f.name for f in dataclasses.fields(node_cls)]
        if part not in names:
            prefix = ".".join(parts[:i]) or "config"
            raise ConfigError(f"unknown config key {prefix}.{part}{_nearest(part, names)}")
        if i == len(parts) - 1:
            node[part] = value
            return
        hint, _ = _unwrap_optional(typing.get_type_hints(node_cls)[part])
        if not dataclasses.is_dataclass(hint):
            raise ConfigError(f"{'.'.join(parts[:i + 1])} is a value, not a section; cannot set {dotted}")
        node = node.setdefault(part, {})
        node_cls = hint


def parse_override(text: str) -> tuple[str, Any]:
    """``key.sub=value`` with the value parsed as YAML (numbers, booleans, lists, null)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw) if raw.strip() else ""


def read_yaml_mapping(path: str | os.PathLike[str] | None, what: str = "config file") -> dict:
    """The mapping in a YAML file (empty for None or an empty file); clear errors name the file."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {exc}") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{what} {path} must hold a mapping of keys, got {type(loaded).__name__}")
    return loaded or {}


def load_config(path: str | os.PathLike[str] | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults, then the YAML file at ``path`` (if any), then ``key=value`` overrides."""
    data = read_yaml_mapping(path)
    for text in overrides:
        key, value = parse_override(text)
        set_dotted(data, key, value, Config)
    try:
        return from_dict(Config, data)
    except ConfigError as exc:
        raise ConfigError(f"{path or 'overrides'}: {exc}") from None


def apply_overrides(cfg: Config, overrides: list[str] | tuple[str, ...]) -> Config:
    """A copy of ``cfg`` with ``key=value`` overrides applied (e.g. on a checkpoint's saved config)."""
    data = to_dict(cfg)
    for text in overrides:
        key, value = parse_override(text)
        set_dotted(data, key, value, Config)
    return from_dict(Config, data)


def config_from_saved(data: dict) -> Config:
    return from_dict(Config, data)


# ----------------------------------------------------------------------------------------------
# resolution and validation


def data_root(cfg: Config) -> Path:
    return Path(cfg.data.root) if cfg.data.root else default_shared_dir()


def resolve_path(cfg: Config, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else data_root(cfg) / p


def scale_milestones(milestones: list[int], base_epochs: int, epochs: int) -> list[int]:
    """Milestones at the same fractions of ``epochs`` as of ``base_epochs`` (90/140 of 40 epochs -> 26)."""
    if base_epochs <= 0:
        raise ConfigError(f"optim.lr_milestones_base_epochs must be positive, got {base_epochs}")
    return sorted({max(1, round(m * epochs / base_epochs)) for m in milestones})


def _check_choice(value: str, choices: tuple[str, ...], where: str) -> None:
    if value not in choices:
        close = difflib.get_close_matches(value, list(choices), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{where} must be one of {', '.join(choices)}, got {value!r}{hint}")


def resolve(cfg: Config) -> Config:
    """A validated copy with derived fields filled in; the data root becomes an absolute path."""
    from train.augment import resolve_augment  # local: augment imports this module

    cfg = from_dict(Config, to_dict(cfg))
    m = cfg.model
    _check_choice(m.backbone, BACKBONES, "model.backbone")
    _check_choice(m.backbone_init, BACKBONE_INITS, "model.backbone_init")
    _check_choice(cfg.data.image_cache, IMAGE_CACHE_MODES, "data.image_cache")
    _check_choice(cfg.train.device, DEVICES, "train.device")
    _check_choice(cfg.eval.val_metric, VAL_METRICS, "eval.val_metric")
    _check_choice(cfg.optim.lr_schedule, LR_SCHEDULES, "optim.lr_schedule")
    _check_choice(m.heatmap_encoding, ENCODINGS, "model.heatmap_encoding")
    _check_choice(m.heatmap_decoding, DECODINGS, "model.heatmap_decoding")
    for name in ("input_size", "heatmap_size"):
        size = getattr(m, name)
        if len(size) != 2 or min(size) <= 0:
            raise ConfigError(f"model.{name} must be [w, h] with positive values, got {size}")
    for name in ("mean_rgb", "std_rgb"):
        if len(getattr(m, name)) != 3:
            raise ConfigError(f"model.{name} must hold 3 values (R, G, B), got {getattr(m, name)}")
    if m.channel_order != "RGB" or m.layout != "NCHW":
        raise ConfigError("model.channel_order must be RGB and model.layout NCHW (the only layout implemented)")
    try:
        joint_set = get_joint_set(m.joint_set)
    except KeyError as exc:
        raise ConfigError(f"model.joint_set: {exc.args[0]}") from None
    m.joint_names = list(joint_set.joints)
    for group, sources in (("data.train", cfg.data.train), ("data.val", cfg.data.val),
                           ("finetune.source_val", cfg.finetune.source_val)):
        for i, src in enumerate(sources):
            _check_choice(src.kind, SOURCE_KINDS, f"{group}[{i}].kind")
            _check_choice(src.crop, CROP_MODES, f"{group}[{i}].crop")
    counts = [s.count is not None for s in cfg.data.train]
    ratios = [s.ratio is not None for s in cfg.data.train]
    if any(counts) and any(ratios):
        raise ConfigError("data.train: give either count or ratio for the sources, not both")
    if any(ratios) and not all(ratios):
        raise ConfigError("data.train: with ratio mixing every source needs a ratio")
    if cfg.train.epochs < 1 or cfg.train.batch_size < 1:
        raise ConfigError(f"train.epochs and train.batch_size must be >= 1, got {cfg.train.epochs}, {cfg.train.batch_size}")
    if not cfg.optim.lr > 0:
        raise ConfigError(f"optim.lr must be positive, got {cfg.optim.lr}")
    cfg.optim.scaled_milestones = scale_milestones(cfg.optim.lr_milestones, cfg.optim.lr_milestones_base_epochs,
                                                   cfg.train.epochs)
    cfg.augment = resolve_augment(cfg.augment)
    cfg.data.root = str(data_root(cfg).resolve())
    return cfg


def save_yaml(cfg: Config, path: str | os.PathLike[str]) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))

"""The ModelInfo of a training checkpoint: preprocessing facts, skeleton, recipe, metrics and provenance."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import rehab
from rehab.core.heatmaps import SUBPIXEL_SHIFT, flip_shift
from rehab.core.files import json_ready
from rehab.core.skeleton import get_joint_set, joint_set_from_names
from rehab.runtime.metadata import PRESENCE_OUTPUT_NAME, ModelInfo
from train.config import Config
from train.engine import recorded_best

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
# A model with a presence head and no threshold given: the probability 0.5 (logit 0).
DEFAULT_PRESENCE_THRESHOLD = 0.5
_GIT_TIMEOUT_S = 5


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=_GIT_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def code_version() -> str:
    """rehab's version, plus the git commit (and "+dirty" for uncommitted changes) when in a git checkout."""
    commit = _git("rev-parse", "--short=12", "HEAD")
    if not commit:
        return rehab.__version__
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return f"{rehab.__version__}+g{commit}{'.dirty' if dirty else ''}"


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def _jsonable(value: Any) -> Any:
    """JSON-ready (NaN as None), anything else JSON cannot hold as its text."""
    return json_ready(value, default=str)


def checkpoint_metrics(config: Config, checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """Evaluation metrics recorded in a checkpoint: its "metrics" entry, else train's best validation PCK."""
    if isinstance(checkpoint.get("metrics"), Mapping):
        return _jsonable(checkpoint["metrics"])
    kind = getattr(config.eval, "val_metric", "pck")
    name, best = recorded_best(checkpoint, kind)
    if config.data.val and name == f"val_{kind}" and math.isfinite(best):
        alpha = config.eval.pckh_alpha if kind == "pckh" else config.eval.pck_alpha
        return {f"val_{kind}@{alpha}": float(best), "val_sets": [dataclasses.asdict(s) for s in config.data.val],
                "limb_joints_only": config.eval.limb_joints_only, "flip_test": False,
                "epoch": int(checkpoint.get("epoch", -1)) + 1}
    return {}


def training_summary(config: Config, checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """Data and recipe, JSON-ready: what a reader needs to know how the weights came about."""
    m = config.model
    return _jsonable({
        "data": {"train": [dataclasses.asdict(s) for s in config.data.train],
                 "val": [dataclasses.asdict(s) for s in config.data.val],
                 "box_padding": config.data.box_padding, "box_margin": config.data.box_margin},
        "model": {"backbone": m.backbone, "backbone_init": m.backbone_init, "deconv_layers": m.deconv_layers,
                  "deconv_filters": m.deconv_filters, "deconv_kernel": m.deconv_kernel, "final_kernel": m.final_kernel,
                  "presence_head": m.presence_head, "presence_pool": m.presence_pool,
                  "presence_hidden": m.presence_hidden, "presence_input": m.presence_input,
                  "presence_conv": m.presence_conv, "presence_tower_blocks": m.presence_tower_blocks},
        "augment": dataclasses.asdict(config.augment),
        "optim": dataclasses.asdict(config.optim),
        "train": {"epochs": config.train.epochs, "batch_size": config.train.batch_size, "seed": config.train.seed,
                  "cpu_bf16": config.train.cpu_bf16, "amp": config.train.amp, "freeze_bn": config.train.freeze_bn,
                  "freeze_pose": config.train.freeze_pose, "presence_loss_weight": config.train.presence_loss_weight},
        "epochs_done": int(checkpoint["epoch"]) + 1 if "epoch" in checkpoint else None,
        "torch_version": checkpoint.get("torch_version"),
    })


def info_from_config(config: Config, checkpoint: Mapping[str, Any] | None = None, name: str = "",
                     source_sha256: str = "", metrics: Mapping[str, Any] | None = None,
                     presence_threshold: float | None = None,
                     presence_acquire_threshold: float | None = None) -> ModelInfo:
    """ModelInfo of a network built from ``config`` (train's Config; ``checkpoint`` the raw dict). A network with
    a presence head gets the presence output and ``presence_threshold`` (default DEFAULT_PRESENCE_THRESHOLD)."""
    checkpoint = checkpoint or {}
    m = config.model
    joints = get_joint_set(m.joint_set) if not m.joint_names else joint_set_from_names(m.joint_names, m.joint_set)
    input_size = (int(m.input_size[0]), int(m.input_size[1]))
    heatmap_size = (int(m.heatmap_size[0]), int(m.heatmap_size[1]))
    found = checkpoint_metrics(config, checkpoint)
    if metrics:
        found.update(_jsonable(dict(metrics)))
    return ModelInfo(
        name=name or f"{m.backbone}_{input_size[0]}x{input_size[1]}_{joints.name}",
        joint_names=joints.joints,
        limbs=joints.limbs,
        flip_pairs=joints.flip_pairs,
        input_size=input_size,
        heatmap_size=heatmap_size,
        heatmap_stride=input_size[0] / heatmap_size[0],
        mean=tuple(float(v) for v in m.mean_rgb),
        std=tuple(float(v) for v in m.std_rgb),
        pixel_range=float(m.pixel_range),
        channel_order=m.channel_order,
        sigma=float(m.sigma),
        subpixel_shift=SUBPIXEL_SHIFT,
        flip_test=bool(config.eval.flip_test),
        flip_shift=flip_shift(m.heatmap_encoding),
        heatmap_encoding=m.heatmap_encoding,
        heatmap_decoding=m.heatmap_decoding,
        box_padding=float(config.data.box_padding),
        backbone=m.backbone,
        training=training_summary(config, checkpoint),
        metrics=found,
        source_sha256=source_sha256,
        exported_at=utc_now(),
        code_version=code_version(),
        precision="fp32",
        presence_output=PRESENCE_OUTPUT_NAME if m.presence_head else "",
        presence_threshold=(None if not m.presence_head else
                            DEFAULT_PRESENCE_THRESHOLD if presence_threshold is None else float(presence_threshold)),
        presence_acquire_threshold=(None if not m.presence_head or presence_acquire_threshold is None else
                                    float(presence_acquire_threshold)),
    )

"""Evaluation: predictions in image pixels, PCK@0.2 (torso), PCKh@0.5 (head) and joint-angle errors.

Predictions are decoded with the core heatmap codec and mapped back to image pixels through the inverse of
the crop's affine matrix, so the numbers measure the same thing the runtime will do.
"""

from __future__ import annotations

import functools
import logging
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from rehab.core.heatmaps import decode_to_image, flip_shift, merge_flip
from rehab.core.machine import cpu_flags
from rehab.core.skeleton import get_joint_set
from rehab.accuracy import EvalReport, Predictions, describe_images, report
from train.config import Config, ModelConfig
from train.preprocess import normalize_tensor

logger = logging.getLogger(__name__)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX-512 BF16 or AMX). Without it, oneDNN emulates bf16 and
    autocast makes training several times slower than fp32 (measured on an AVX2-only EPYC: an epoch that takes
    11 min in fp32 had not finished after 16 min in bf16)."""
    flags = cpu_flags()
    if flags is None:
        return True  # not Linux: leave the choice to the config
    return "avx512_bf16" in flags or "amx_bf16" in flags


@functools.lru_cache(maxsize=1)
def _bf16_usable() -> bool:
    if cpu_has_native_bf16():
        return True
    logger.warning("train.cpu_bf16 is on but this CPU has no native bf16 (avx512_bf16/amx_bf16): running in fp32, "
                   "which is faster here than emulated bf16")
    return False


def autocast_context(device: torch.device, cpu_bf16: bool, cuda_amp: bool):
    if device.type == "cuda" and cuda_amp:
        return torch.autocast("cuda", dtype=torch.float16)
    if device.type == "cpu" and cpu_bf16 and _bf16_usable():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return nullcontext()


@torch.no_grad()
def predict(model: torch.nn.Module, loader: DataLoader, model_cfg: ModelConfig, device: torch.device,
            flip_test: bool = False, cpu_bf16: bool = False, cuda_amp: bool = False, channels_last: bool = False,
            progress: bool = True, loss_fn: torch.nn.Module | None = None, desc: str = "eval") -> Predictions:
    """Run ``model`` over ``loader`` (a dataset without augmentation) and map keypoints to image pixels."""
    was_training = model.training
    model.eval()
    joint_set = get_joint_set(model_cfg.joint_set)
    shift = flip_shift(model_cfg.heatmap_encoding)
    out_kp, out_scores, out_gt, out_ann, out_head = [], [], [], [], []
    losses = []
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
        images = normalize_tensor(batch["image"].to(device, non_blocking=True), model_cfg)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast_context(device, cpu_bf16, cuda_amp):
            heatmaps = model(images)
            if flip_test:
                flipped = model(torch.flip(images, dims=[3]))
        heatmaps = heatmaps.float()
        if loss_fn is not None:
            losses.append(float(loss_fn(heatmaps, batch["target"].to(device), batch["target_weight"].to(device))))
        hm = heatmaps.cpu().numpy()
        if flip_test:
            hm = merge_flip(hm, flipped.float().cpu().numpy(), joint_set.flip_permutation, shift=shift)
        kp_img, scores = decode_to_image(hm, batch["meta"]["matrix"].numpy(), model_cfg.input_size,
                                         model_cfg.heatmap_size, model_cfg.heatmap_encoding,
                                         model_cfg.heatmap_decoding, model_cfg.sigma)
        out_kp.append(kp_img)
        out_scores.append(scores)
        out_gt.append(batch["meta"]["joints_px"].numpy())
        out_ann.append(batch["meta"]["annotated"].numpy())
        out_head.append(batch["meta"]["head_box_xyxy"].numpy())
    if was_training:
        model.train()
    if not out_kp:
        raise ValueError("the evaluation dataset is empty")
    return Predictions(np.concatenate(out_kp), np.concatenate(out_scores), np.concatenate(out_gt),
                       np.concatenate(out_ann).astype(bool), np.concatenate(out_head), joint_set.joints,
                       float(np.mean(losses)) if losses else float("nan"))


@torch.no_grad()
def predict_presence(model: torch.nn.Module, loader: DataLoader, model_cfg: ModelConfig, device: torch.device,
                     cpu_bf16: bool = False, cuda_amp: bool = False, channels_last: bool = False,
                     progress: bool = True, desc: str = "presence") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(presence probabilities (N,), targets (N,), presence weights (N,)) of a model with a presence head."""
    was_training = model.training
    model.eval()
    probs, targets, weights = [], [], []
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
        images = normalize_tensor(batch["image"].to(device, non_blocking=True), model_cfg)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast_context(device, cpu_bf16, cuda_amp):
            _, logits = model(images, with_presence=True)
        probs.append(torch.sigmoid(logits.float()).reshape(-1).cpu().numpy())
        targets.append(batch["presence"].numpy())
        weights.append(batch["presence_weight"].numpy())
    if was_training:
        model.train()
    if not probs:
        raise ValueError("the presence evaluation dataset is empty")
    return np.concatenate(probs), np.concatenate(targets), np.concatenate(weights)


def source_label(src) -> str:
    label = f"{src.kind}:{src.split}" if src.kind != "video" else f"video:{Path(src.path).stem}"
    if src.sample != "person":
        label += f":{src.sample}"
    if src.start is not None or src.stop is not None:
        label += f"[{'' if src.start is None else src.start}:{'' if src.stop is None else src.stop}]"
    if src.limit is not None:
        label += f":{src.limit}"
    return label + ("" if src.crop == "person" else f":{src.crop}")


def evaluate_model(model: torch.nn.Module, cfg: Config, sources: list, flip_test: bool | None = None,
                   device: torch.device | None = None, progress: bool = True) -> list[EvalReport]:
    """One report per source (``SourceConfig``): PCK@alpha, PCKh@alpha, angle errors."""
    from train.dataset import build_source_dataset

    device = device or next(model.parameters()).device
    flip = cfg.eval.flip_test if flip_test is None else flip_test
    joint_set = get_joint_set(cfg.model.joint_set)
    reports = []
    for src in sources:
        ds = build_source_dataset(cfg, src, train=False)
        loader = DataLoader(ds, batch_size=cfg.eval.batch_size, shuffle=False, num_workers=cfg.data.num_workers)
        pred = predict(model, loader, cfg.model, device, flip_test=flip, cpu_bf16=cfg.train.cpu_bf16,
                       cuda_amp=cfg.train.amp, channels_last=cfg.train.channels_last, progress=progress,
                       desc=f"eval {source_label(src)}")
        rep = report(pred, joint_set, source_label(src), flip, cfg.eval.pck_alpha, cfg.eval.pckh_alpha,
                     cfg.eval.limb_joints_only, images=describe_images([r.entry for r in ds.records]))
        logger.info("%s: PCK@%.2f %.2f, PCKh@%.2f %.2f (%s)", rep.dataset, cfg.eval.pck_alpha, rep.pck["mean"],
                    cfg.eval.pckh_alpha, rep.pckh["mean"], rep.images)
        reports.append(rep)
    return reports


def parse_source(spec: str):
    """``kind:split[:limit][:crop]`` (e.g. ``lsp:test:300:full_image``) -> SourceConfig with the default path."""
    from train.config import CROP_MODES, SOURCE_KINDS, SourceConfig

    parts = spec.split(":")
    kind = parts[0]
    if kind not in SOURCE_KINDS:
        raise ValueError(f"data source {spec!r}: kind must be one of {', '.join(SOURCE_KINDS)}")
    default_paths = {"lsp": "data/lsp", "lspet": "data/lspet", "mpii": "data/mpii",
                     "mpii_json": "data/fixtures/mpii/test_mpii.json", "coco": "data/fixtures/coco/test_coco.json"}
    src = SourceConfig(kind=kind, path=default_paths.get(kind, ""), split=parts[1] if len(parts) > 1 else "test")
    for extra in parts[2:]:
        if extra.isdigit():
            src.limit = int(extra)
        elif extra in CROP_MODES:
            src.crop = extra
        else:
            raise ValueError(f"data source {spec!r}: {extra!r} is neither a limit nor a crop mode {CROP_MODES}")
    return src

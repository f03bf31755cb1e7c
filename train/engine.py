"""The training loop: data, model, Adam + multistep LR, validation PCK per epoch, checkpoints, resume, DDP.

A run directory holds config.yaml (the resolved config), log.csv (one row per epoch; the configured
eval.val_metric in val_pck and pck_<joint> (PCK@0.2) or val_pckh and pckh_<joint> (PCKh@0.5)), last.pt and best.pt
(model, optimizer, scheduler, epoch, RNG states, resolved config, the best value of what best.pt is chosen by:
val_pck or val_pckh when the run validates, else train_loss) and, when the tensorboard
package is installed, TensorBoard event files. Resuming loads last.pt and continues with the next epoch;
samples and shuffling depend only on (seed, epoch), so a resumed run matches an uninterrupted one.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import os
import random
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from rehab.core.machine import cpu_name
from rehab.core.skeleton import get_joint_set
from rehab.accuracy import pck_torso, pckh_head
from train.config import (
    Config,
    config_from_saved,
    data_root,
    resolve,
    save_yaml,
    to_dict,
)
from train.dataset import build_eval_dataset, build_train_dataset
from train.distill import Teacher, blend_targets
from train.distributed import DistInfo, all_reduce_mean, barrier, cleanup, init_from_env, unwrap
from rehab.core.presence_metrics import binary_at, roc_auc
from train.predict import autocast_context, cpu_has_native_bf16, predict, predict_presence
from train.loss import JointsMSELoss, PresenceLoss
from train.model import build_model
from train.preprocess import normalize_tensor
from train.schedule import PRESENCE_PREFIX, build_optimizer, build_scheduler, set_scheduled_lr

logger = logging.getLogger(__name__)

LAST = "last.pt"
BEST = "best.pt"
LOG_CSV = "log.csv"
CONFIG_YAML = "config.yaml"


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    lr: float
    train_loss: float
    images: int
    seconds: float
    data_seconds: float
    loss_parts: dict = field(default_factory=dict)  # heatmap and presence terms of train_loss, when both exist

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


@dataclass(frozen=True)
class FitResult:
    run_dir: Path
    epochs_done: int
    best_metric: float  # the value of best_metric_name in its own units (PCK %, or the training loss)
    last_checkpoint: Path
    best_checkpoint: Path
    weights_digest: str = ""  # sha256 of the final parameters: equal on every DDP rank when in sync
    best_metric_name: str = ""  # val_pck or val_pckh when the run validates, else train_loss


def device_text(device: torch.device, cfg: Config) -> str:
    """Where and in which precision an epoch ran, for its log row: a run resumed on another machine says so."""
    if device.type == "cuda":
        amp = "fp16 autocast" if cfg.train.amp else "fp32"
        return f"{torch.cuda.get_device_name(device)}, {amp}"
    bf16 = cfg.train.cpu_bf16 and cpu_has_native_bf16()
    return f"{cpu_name()}, {torch.get_num_threads()} threads, {'bf16 autocast' if bf16 else 'fp32'}"


def select_device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("train.device=cuda but CUDA is not available on this machine")
        return torch.device("cuda")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_states() -> dict:
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


# Probability above which a crop counts as "person" in the per-epoch presence validation.
VAL_PRESENCE_THRESHOLD = 0.5


def _loader(dataset, batch_size: int, shuffle: bool, cfg: Config, info: DistInfo, drop_last: bool) -> tuple[DataLoader, DistributedSampler]:
    # One sampler type for single- and multi-process runs: its order depends only on (seed, epoch).
    sampler = DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=shuffle,
                                 seed=cfg.train.seed, drop_last=drop_last)
    workers = cfg.data.num_workers
    if workers > 0 and cfg.data.image_cache != "none":
        # Workers are re-created every epoch so that they see the dataset's new epoch (augmentation seeds);
        # an in-memory image cache therefore only pays off with num_workers=0.
        logger.warning("data.image_cache=%s with data.num_workers=%d: each worker's cache lasts one epoch",
                       cfg.data.image_cache, workers)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                        pin_memory=torch.cuda.is_available(), drop_last=drop_last,
                        persistent_workers=False)
    return loader, sampler


class CsvLog:
    """log.csv with one row per epoch; the header is fixed by the first row. The validation columns are named
    by the metric they hold (``metric`` pck or pckh): val_pck and pck_<joint>, or val_pckh and pckh_<joint>."""

    PRESENCE_FIELDS = ["train_heatmap_loss", "train_presence_loss", "val_presence_bce", "val_presence_acc",
                       "val_presence_recall", "val_presence_specificity", "val_presence_auc"]

    def __init__(self, path: Path, joint_names: tuple[str, ...], presence: bool = False, metric: str = "pck") -> None:
        self.path = path
        self.fields = (["epoch", "lr", "train_loss", "val_loss", f"val_{metric}", "images_per_s", "data_fraction",
                        "epoch_seconds"] + [f"{metric}_{j}" for j in joint_names]
                       + (self.PRESENCE_FIELDS if presence else []) + ["device"])

    def append(self, row: dict) -> None:
        new = not self.path.exists()
        with self.path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.fields)
            if new:
                writer.writeheader()
            writer.writerow({k: row.get(k, "") for k in self.fields})

    def truncate_after(self, epoch: int) -> None:
        """Drop rows of epochs after ``epoch`` (written after the checkpoint a resume starts from)."""
        if not self.path.exists():
            return
        with self.path.open(newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if int(r["epoch"]) <= epoch]
        self.path.unlink()
        for r in rows:
            self.append(r)


def _tensorboard(run_dir: Path, enabled: bool):
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        logger.info("tensorboard is not installed; logging to log.csv only")
        return None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))


TRAIN_LOSS = "train_loss"


def selection_metric(cfg: Config, validates: bool) -> str:
    """What best.pt keeps the best of: the validation metric (higher is better) when the run validates, else the
    training loss (lower is better)."""
    return f"val_{cfg.eval.val_metric}" if validates else TRAIN_LOSS


def is_better(name: str, value: float, best: float) -> bool:
    if math.isnan(best):
        return True
    return value < best if name == TRAIN_LOSS else value > best


def recorded_best(ckpt: Mapping, val_metric: str) -> tuple[str, float]:
    """(what the checkpoint kept the best of, its value in its own units); ("", NaN) when it cannot be told.
    Checkpoints from before best_metric_name held the validation metric (``val_<val_metric>``), or -train_loss
    (< 0) in runs without validation."""
    value = ckpt.get("best_metric")
    value = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    recorded = ckpt.get("best_metric_name")
    if recorded is None:
        if not math.isfinite(value):
            return "", math.nan
        return (TRAIN_LOSS, -value) if value < 0 else (f"val_{val_metric}", value)
    return str(recorded), value


def checkpoint_best(ckpt: Mapping, name: str) -> float:
    """The best value of ``name`` a checkpoint recorded, NaN when it tracked something else."""
    val_metric = name[len("val_"):] if name.startswith("val_") else "pck"
    recorded, value = recorded_best(ckpt, val_metric)
    if recorded != name:
        logger.info("the checkpoint kept the best %s; this run keeps the best %s and starts that afresh",
                    recorded or "(unknown)", name)
        return math.nan
    return value


def save_checkpoint(path: Path, model, optimizer, scheduler, scaler, epoch: int, cfg: Config, best_metric: float,
                    best_metric_name: str, extra: dict | None = None) -> None:
    state = {
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": epoch,
        "rng": rng_states(),
        "config": to_dict(cfg),
        "best_metric": best_metric,
        "best_metric_name": best_metric_name,
        "torch_version": torch.__version__,
    }
    if extra:
        state.update(extra)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a half-written last.pt


def load_weights(model: torch.nn.Module, checkpoint: str | os.PathLike[str]) -> None:
    """Model weights (only) from a training checkpoint, as fine-tuning starts from a source model."""
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint to start from not found: {path} (finetune.checkpoint)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)["model"]
    except Exception as exc:
        raise ValueError(f"cannot read model weights from {path}: {type(exc).__name__}: {exc}") from None
    # A presence head added by fine-tuning is not in the source model: it starts from its initialisation.
    new = [k for k in unwrap(model).state_dict() if k.startswith(PRESENCE_PREFIX) and k not in state]
    try:
        result = model.load_state_dict(state, strict=not new)
    except RuntimeError as exc:
        raise ValueError(f"the weights in {path} do not fit the configured model: {exc}") from None
    if new:
        others = [k for k in result.missing_keys if k not in new]
        if others or result.unexpected_keys:
            raise ValueError(f"the weights in {path} do not fit the configured model: missing {others[:5]}, "
                             f"unexpected {result.unexpected_keys[:5]}")
        tower = [k for k in new if k.startswith(PRESENCE_PREFIX + "tower.")]
        if tower:
            unwrap(model).init_presence_tower()
        logger.info("model weights from %s; the presence head (%d tensors) is new%s", path, len(new),
                    f" (its tower of {len(tower)} tensors copied from the backbone's last stages)" if tower else "")
    else:
        logger.info("model weights from %s", path)


def set_train_mode(model: torch.nn.Module, freeze_bn: bool) -> None:
    """``model.train()``; with ``freeze_bn`` its BatchNorm layers stay in eval mode (running statistics fixed)."""
    model.train()
    if freeze_bn:
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()


def train_one_epoch(model, loader, optimizer, scaler, loss_fn, cfg: Config, device: torch.device, epoch: int,
                    info: DistInfo, presence_fn: torch.nn.Module | None = None, teacher=None) -> EpochStats:
    """One epoch; with ``presence_fn`` (a model with a presence head) the loss is heatmap MSE +
    train.presence_loss_weight x presence BCE; with ``teacher`` (train.distill.Teacher) the heatmap targets
    blend in the teacher's maps."""
    set_train_mode(model, cfg.train.freeze_bn)
    total_loss, images, data_seconds = 0.0, 0, 0.0
    total_hm, total_presence = 0.0, 0.0
    start = tick = time.perf_counter()
    cap = cfg.train.max_steps_per_epoch
    steps = len(loader) if cap is None else min(cap, len(loader))
    bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", disable=not (cfg.train.progress and info.is_main),
               leave=False)
    for step, batch in enumerate(loader):
        if step >= steps:
            break
        data_seconds += time.perf_counter() - tick
        images_u8 = batch["image"].to(device, non_blocking=True)
        target = batch["target"].to(device, non_blocking=True)
        weight = batch["target_weight"].to(device, non_blocking=True)
        x = normalize_tensor(images_u8, cfg.model)
        if cfg.train.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_context(device, cfg.train.cpu_bf16, cfg.train.amp):
            if teacher is not None:
                target, weight = blend_targets(target, weight, teacher.heatmaps(images_u8, target.shape[-2:]),
                                               cfg.train.distill_alpha)
            out = model(x, with_presence=True) if presence_fn is not None else model(x)
        if presence_fn is not None:
            heatmaps, logits = out
            hm_loss = loss_fn(heatmaps.float(), target, weight)
            p_loss = presence_fn(logits, batch["presence"].to(device), batch["presence_weight"].to(device))
            loss = hm_loss + cfg.train.presence_loss_weight * p_loss
            total_hm += float(hm_loss.detach()) * images_u8.shape[0]
            total_presence += float(p_loss.detach()) * images_u8.shape[0]
        else:
            loss = loss_fn(out.float(), target, weight)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch + 1}, step {step}")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        n = images_u8.shape[0]
        total_loss += float(loss.detach()) * n
        images += n
        bar.update(1)
        bar.set_postfix(loss=f"{total_loss / images:.2e}")
        tick = time.perf_counter()
    bar.close()
    seconds = time.perf_counter() - start
    mean_loss = all_reduce_mean(total_loss / max(images, 1), info, device)
    parts = {}
    if presence_fn is not None:
        parts = {"train_heatmap_loss": all_reduce_mean(total_hm / max(images, 1), info, device),
                 "train_presence_loss": all_reduce_mean(total_presence / max(images, 1), info, device)}
    return EpochStats(epoch, optimizer.param_groups[0]["lr"], mean_loss, images * info.world_size, seconds, data_seconds,
                      parts)


def load_resume_checkpoint(run_dir: str | os.PathLike[str]) -> tuple[dict, Config]:
    last = Path(run_dir) / LAST
    if not last.is_file():
        raise FileNotFoundError(f"cannot resume: {last} does not exist")
    try:
        ckpt = torch.load(last, map_location="cpu", weights_only=False)
        return ckpt, config_from_saved(ckpt["config"])
    except Exception as exc:
        raise ValueError(f"cannot resume from {last}: {type(exc).__name__}: {exc}") from None


def fit(cfg: Config | None, run_dir: str | os.PathLike[str], resume: bool = False) -> FitResult:
    """Train ``cfg`` into ``run_dir``.

    With ``resume``, continue from run_dir/last.pt; ``cfg=None`` then means the config saved in it
    (the CLI passes that config with any ``--set`` overrides applied, e.g. more epochs).
    """
    run_dir = Path(run_dir)
    ckpt = None
    if resume:
        ckpt, saved = load_resume_checkpoint(run_dir)
        cfg = saved if cfg is None else cfg
    if cfg is None:
        raise ValueError("fit needs a config unless it resumes")
    cfg = resolve(cfg)
    device = select_device(cfg.train.device)
    info = init_from_env(device.type)
    try:
        return _fit(cfg, run_dir, device, info, ckpt)
    finally:
        cleanup(info)


def _fit(cfg: Config, run_dir: Path, device: torch.device, info: DistInfo, ckpt: dict | None) -> FitResult:
    if device.type == "cpu":
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed + info.rank)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_yaml(cfg, run_dir / CONFIG_YAML)
    joint_set = get_joint_set(cfg.model.joint_set)

    train_ds = build_train_dataset(cfg)
    val_ds = build_eval_dataset(cfg, cfg.data.val) if cfg.data.val else None
    per_rank_batch = max(1, cfg.train.batch_size // info.world_size)
    train_loader, train_sampler = _loader(train_ds, per_rank_batch, True, cfg, info, drop_last=True)
    if len(train_loader) == 0:
        raise ValueError(f"the training set has {len(train_ds)} samples, fewer than one batch of {per_rank_batch} per "
                         f"process; lower train.batch_size or add data")
    logger.info("train: %d samples, %d steps/epoch of %d per process x %d; val: %d", len(train_ds), len(train_loader),
                per_rank_batch, info.world_size, len(val_ds) if val_ds else 0)

    init_from = cfg.finetune.checkpoint if ckpt is None else ""
    model = build_model(cfg.model, init_backbone=ckpt is None and not init_from, data_root=data_root(cfg)).to(device)
    if init_from:
        load_weights(model, init_from)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.train.freeze_pose:
        for name, param in model.named_parameters():
            param.requires_grad_(name.startswith(PRESENCE_PREFIX))
        logger.info("train.freeze_pose: only the presence head learns (%d tensors)",
                    sum(p.requires_grad for p in model.parameters()))
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and cfg.train.amp)
    selection = selection_metric(cfg, val_ds is not None)
    start_epoch, best_metric = 0, math.nan
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        set_rng_states(ckpt["rng"])
        start_epoch, best_metric = int(ckpt["epoch"]) + 1, checkpoint_best(ckpt, selection)
        # The epoch count or the milestones may have changed on resume; the schedule follows the resolved
        # config, including a milestone moved to (or before) the epoch the run resumes at.
        if isinstance(scheduler, torch.optim.lr_scheduler.MultiStepLR):
            scheduler.milestones = Counter(cfg.optim.scaled_milestones)
        set_scheduled_lr(optimizer, scheduler, cfg, start_epoch)
        logger.info("resumed after epoch %d (best %s %.4g)", start_epoch, selection, best_metric)
    if info.enabled:
        model = DistributedDataParallel(model, device_ids=[info.local_rank] if device.type == "cuda" else None)

    loss_fn = JointsMSELoss()
    teacher = None
    if cfg.train.distill_from:
        teacher = Teacher(cfg.train.distill_from, cfg.model, device, flip=cfg.train.distill_flip,
                          channels_last=cfg.train.channels_last)
    presence = cfg.model.presence_head
    presence_fn = PresenceLoss() if presence else None
    log = CsvLog(run_dir / LOG_CSV, joint_set.joints, presence=presence, metric=cfg.eval.val_metric)
    if info.is_main and ckpt is not None:
        log.truncate_after(start_epoch)
    tb = _tensorboard(run_dir, cfg.train.tensorboard) if info.is_main else None
    val_loader = None
    if val_ds is not None and info.is_main:
        val_loader = DataLoader(val_ds, batch_size=cfg.eval.batch_size, shuffle=False,
                                num_workers=cfg.data.num_workers)
    presence_loader = None
    if cfg.data.presence_val and info.is_main:
        presence_loader = DataLoader(build_eval_dataset(cfg, cfg.data.presence_val), batch_size=cfg.eval.batch_size,
                                     shuffle=False, num_workers=cfg.data.num_workers)

    epoch = start_epoch - 1
    for epoch in range(start_epoch, cfg.train.epochs):
        train_ds.set_epoch(epoch)
        train_sampler.set_epoch(epoch)
        stats = train_one_epoch(model, train_loader, optimizer, scaler, loss_fn, cfg, device, epoch, info, presence_fn,
                                teacher)
        scheduler.step()
        row = {"epoch": epoch + 1, "lr": stats.lr, "train_loss": stats.train_loss,
               "images_per_s": round(stats.images_per_s, 2),
               "data_fraction": round(stats.data_seconds / max(stats.seconds, 1e-9), 4),
               "epoch_seconds": round(stats.seconds, 1), "device": device_text(device, cfg), **stats.loss_parts}
        # An epoch that does not validate in a run that does cannot compete for best.pt.
        score = stats.train_loss if selection == TRAIN_LOSS else None
        val_key = f"val_{cfg.eval.val_metric}"
        if info.is_main:
            if val_loader is not None and ((epoch + 1) % cfg.train.val_every == 0 or epoch + 1 == cfg.train.epochs):
                pred = predict(unwrap(model), val_loader, cfg.model, device, flip_test=False,
                               cpu_bf16=cfg.train.cpu_bf16, cuda_amp=cfg.train.amp,
                               channels_last=cfg.train.channels_last, progress=cfg.train.progress, loss_fn=loss_fn,
                               desc="val")
                if cfg.eval.val_metric == "pckh":
                    result = pckh_head(pred, joint_set, cfg.eval.pckh_alpha)
                else:
                    result = pck_torso(pred, joint_set, cfg.eval.pck_alpha, cfg.eval.limb_joints_only)
                score = result.mean
                row.update({"val_loss": pred.mean_loss, val_key: round(result.mean, 3)})
                row.update({f"{cfg.eval.val_metric}_{j}": round(float(v), 3)
                            for j, v in zip(joint_set.joints, result.per_joint)})
            if presence_loader is not None:
                row.update(_presence_row(unwrap(model), presence_loader, cfg, device))
            log.append(row)
            if tb is not None:
                for key, value in row.items():
                    if key != "epoch" and value != "":
                        tb.add_scalar(key, float(value), epoch + 1)
            improved = score is not None and is_better(selection, score, best_metric)
            if improved:
                best_metric = score
            save_checkpoint(run_dir / LAST, model, optimizer, scheduler, scaler, epoch, cfg, best_metric, selection)
            if improved:
                save_checkpoint(run_dir / BEST, model, optimizer, scheduler, scaler, epoch, cfg, best_metric, selection)
            logger.info("epoch %d/%d: loss %.3e, %s %s, %.1f img/s, data %.0f%% of the epoch time",
                        epoch + 1, cfg.train.epochs, stats.train_loss, val_key, row.get(val_key, "-"),
                        stats.images_per_s, 100 * row["data_fraction"])
        barrier(info)
    if tb is not None:
        tb.close()
    return FitResult(run_dir, epoch + 1, best_metric, run_dir / LAST, run_dir / BEST,
                     weights_digest(unwrap(model)), selection)


def _presence_row(model: torch.nn.Module, loader: DataLoader, cfg: Config, device: torch.device) -> dict:
    """The per-epoch presence validation columns of log.csv (threshold VAL_PRESENCE_THRESHOLD)."""
    probs, targets, weights = predict_presence(model, loader, cfg.model, device, cpu_bf16=cfg.train.cpu_bf16,
                                               cuda_amp=cfg.train.amp, channels_last=cfg.train.channels_last,
                                               progress=cfg.train.progress, desc="val presence")
    keep = weights > 0
    probs, labels = probs[keep], targets[keep] > 0.5
    eps = 1e-7
    bce = float(-np.mean(np.where(labels, np.log(probs + eps), np.log(1 - probs + eps))))
    at = binary_at(probs, labels, VAL_PRESENCE_THRESHOLD)
    logger.info("presence val (%d crops): BCE %.4f, accuracy %.4f, recall %.4f, specificity %.4f at %.2f", len(probs),
                bce, at.accuracy, at.recall, at.specificity, VAL_PRESENCE_THRESHOLD)
    return {"val_presence_bce": round(bce, 5), "val_presence_acc": round(at.accuracy, 5),
            "val_presence_recall": round(at.recall, 5), "val_presence_specificity": round(at.specificity, 5),
            "val_presence_auc": round(roc_auc(probs, labels), 5)}


def weights_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters()):
        digest.update(name.encode())
        digest.update(param.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()

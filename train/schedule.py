"""The optimiser and the LR schedule: Adam (the presence head optionally its own parameter group and LR), and a
multistep (the paper's x0.1 steps) or cosine schedule per epoch, which a resume puts back exactly."""

from __future__ import annotations

import logging
import math

import torch

from train.config import Config
from train.distributed import unwrap

logger = logging.getLogger(__name__)

PRESENCE_PREFIX = "presence."

def build_optimizer(model: torch.nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """Adam; with optim.presence_head_lr the presence head is a second parameter group at that LR. Every group
    records its schedule base LR as ``base_lr`` (kept in the optimiser state, so a resume restores it)."""
    if cfg.optim.optimizer != "adam":
        raise ValueError(f"optim.optimizer must be adam, got {cfg.optim.optimizer!r}")
    named = list(unwrap(model).named_parameters())
    head = [p for n, p in named if n.startswith(PRESENCE_PREFIX)]
    if cfg.optim.presence_head_lr is None or not head:
        groups = [{"params": [p for _, p in named], "base_lr": cfg.optim.lr}]
    else:
        groups = [{"params": [p for n, p in named if not n.startswith(PRESENCE_PREFIX)], "base_lr": cfg.optim.lr},
                  {"params": head, "lr": cfg.optim.presence_head_lr, "base_lr": cfg.optim.presence_head_lr}]
    return torch.optim.Adam(groups, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)


def cosine_factor(epoch: int, epochs: int) -> float:
    """Share of the base LR in (0-based) ``epoch`` of a cosine schedule over ``epochs`` epochs."""
    return 0.5 * (1.0 + math.cos(math.pi * min(epoch, epochs) / max(epochs, 1)))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Config) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.optim.lr_schedule == "cosine":
        epochs = cfg.train.epochs
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: cosine_factor(epoch, epochs))
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=cfg.optim.scaled_milestones,
                                                gamma=cfg.optim.lr_factor)


def scheduled_lr(cfg: Config, epoch: int, base_lr: float | None = None) -> float:
    """The schedule's LR for (0-based) ``epoch`` from ``base_lr`` (default optim.lr): multistep x lr_factor at
    every milestone reached, or cosine."""
    if cfg.optim.lr_schedule == "cosine":
        return (cfg.optim.lr if base_lr is None else base_lr) * cosine_factor(epoch, cfg.train.epochs)
    passed = sum(1 for m in cfg.optim.scaled_milestones if m <= epoch)
    return (cfg.optim.lr if base_lr is None else base_lr) * cfg.optim.lr_factor ** passed


def _group_base_lrs(optimizer: torch.optim.Optimizer, cfg: Config) -> list[float]:
    # The first group follows optim.lr (which a resume may change); a presence head group its own LR.
    bases = [cfg.optim.lr]
    for group in optimizer.param_groups[1:]:
        bases.append(cfg.optim.presence_head_lr if cfg.optim.presence_head_lr is not None
                     else group.get("base_lr", cfg.optim.lr))
    return bases


def set_scheduled_lr(optimizer: torch.optim.Optimizer, scheduler, cfg: Config, epoch: int) -> None:
    """Put the optimiser (and the scheduler's record of it) at the schedule's LR for ``epoch``."""
    bases = _group_base_lrs(optimizer, cfg)
    lrs = [scheduled_lr(cfg, epoch, b) for b in bases]
    current = optimizer.param_groups[0]["lr"]
    if not math.isclose(current, lrs[0], rel_tol=1e-9):
        logger.info("LR %g -> %g for epoch %d (schedule: %s from %g, x %g at epochs %s for multistep)", current,
                    lrs[0], epoch + 1, cfg.optim.lr_schedule, cfg.optim.lr, cfg.optim.lr_factor,
                    cfg.optim.scaled_milestones)
    for group, base, lr in zip(optimizer.param_groups, bases, lrs):
        group["lr"] = lr
        group["initial_lr"] = base
        group["base_lr"] = base
    scheduler.base_lrs = list(bases)

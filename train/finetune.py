"""Fine-tuning a trained model on a target dataset, with source and target accuracy before and after.

This is the paper's catastrophic-forgetting experiment: a small learning rate keeps more of the source
domain (MPII) while the model adapts to the target (LSP).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from rehab.core.files import write_json
from train.config import Config, resolve, to_dict
from train.engine import BEST, LAST, fit, select_device
from train.predict import evaluate_model
from train.model import load_checkpoint

logger = logging.getLogger(__name__)

FINETUNE_JSON = "finetune.json"
PRESENCE_MODEL_FIELDS = ("presence_head", "presence_pool", "presence_hidden", "presence_input", "presence_conv",
                         "presence_tower_blocks")


@dataclass(frozen=True)
class FinetuneResult:
    run_dir: Path
    before: dict
    after: dict
    summary_path: Path


def _scores(model: torch.nn.Module, cfg: Config, device: torch.device) -> dict:
    out = {}
    for role, sources in (("source", cfg.finetune.source_val), ("target", cfg.data.val)):
        reports = evaluate_model(model, cfg, sources, device=device, progress=cfg.train.progress)
        out[role] = [r.to_dict() for r in reports]
    return out


def _summary_rows(before: dict, after: dict) -> list[dict]:
    rows = []
    for role in ("source", "target"):
        for b, a in zip(before[role], after[role]):
            rows.append({"role": role, "dataset": b["dataset"],
                         "pck_before": b["pck"]["mean"], "pck_after": a["pck"]["mean"],
                         "pckh_before": b["pckh"]["mean"], "pckh_after": a["pckh"]["mean"]})
    return rows


def finetune(cfg: Config, run_dir: str | os.PathLike[str]) -> FinetuneResult:
    """Start from ``cfg.finetune.checkpoint`` (its model config wins), train on ``cfg.data.train`` at
    ``cfg.optim.lr``, and report PCK/PCKh on the source (``finetune.source_val``) and target (``data.val``)
    evaluation sets before and after. Writes run_dir/finetune.json."""
    if not cfg.finetune.checkpoint:
        raise ValueError("fine-tuning needs finetune.checkpoint (the source model's best.pt or last.pt)")
    run_dir = Path(run_dir)
    source_model, source_cfg, _ = load_checkpoint(cfg.finetune.checkpoint)
    if to_dict(cfg.model) != to_dict(source_cfg.model):
        logger.info("fine-tuning keeps the source checkpoint's model section")
    wanted = cfg.model
    cfg.model = source_cfg.model
    if wanted.presence_head and not source_cfg.model.presence_head:
        # The one change fine-tuning may make to the network: add a presence head (its weights start new).
        logger.info("fine-tuning adds a presence head (%s pooling, %d hidden units)", wanted.presence_pool,
                    wanted.presence_hidden)
        for name in PRESENCE_MODEL_FIELDS:
            setattr(cfg.model, name, getattr(wanted, name))
    cfg = resolve(cfg)
    device = select_device(cfg.train.device)
    if device.type == "cpu":
        torch.set_num_threads(cfg.train.threads)
    before = _scores(source_model.to(device), cfg, device)
    del source_model
    fit(cfg, run_dir)
    tuned, _, _ = load_checkpoint(run_dir / LAST)
    after = _scores(tuned.to(device), cfg, device)
    summary = {"checkpoint": str(cfg.finetune.checkpoint), "lr": cfg.optim.lr, "epochs": cfg.train.epochs,
               "table": _summary_rows(before, after), "before": before, "after": after,
               "best_checkpoint": str(run_dir / BEST)}
    path = run_dir / FINETUNE_JSON
    write_json(summary, path)
    for row in summary["table"]:
        logger.info("%s %s: PCK %.2f -> %.2f, PCKh %.2f -> %.2f", row["role"], row["dataset"], row["pck_before"],
                    row["pck_after"], row["pckh_before"], row["pckh_after"])
    return FinetuneResult(run_dir, before, after, path)

"""Measure CPU/GPU training throughput of a config and what data loading costs next to the model step.

    python -m train.throughput --config train/configs/default_mnv2.yaml [--set key=value ...] [--steps 5]

Model step: forward + backward + Adam on one batch already in memory (same autocast/channels_last as
training). Data: building the same number of samples from the training set (read, decode, crop, heatmaps),
single process, the ``num_workers=0`` cost.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass

import torch
import typer

from train.config import data_root, load_config, resolve
from train.dataset import build_train_dataset
from train.engine import select_device
from train.schedule import build_optimizer
from train.predict import autocast_context
from train.loss import JointsMSELoss
from train.model import build_model
from train.preprocess import normalize_tensor

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Throughput:
    batch_size: int
    step_seconds: float
    data_seconds_per_batch: float

    @property
    def images_per_s(self) -> float:
        return self.batch_size / self.step_seconds

    @property
    def data_fraction(self) -> float:
        return self.data_seconds_per_batch / (self.data_seconds_per_batch + self.step_seconds)


def measure(cfg, steps: int = 5, warmup: int = 1) -> Throughput:
    cfg = resolve(cfg)
    device = select_device(cfg.train.device)
    if device.type == "cpu":
        torch.set_num_threads(cfg.train.threads)
    dataset = build_train_dataset(cfg)
    bs = cfg.train.batch_size
    start = time.perf_counter()
    samples = [dataset[i % len(dataset)] for i in range(bs)]
    batch = torch.utils.data.default_collate(samples)
    data_seconds = time.perf_counter() - start
    model = build_model(cfg.model, init_backbone=cfg.model.backbone_init != "imagenet", data_root=data_root(cfg))
    model = model.to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = build_optimizer(model, cfg)
    loss_fn = JointsMSELoss()
    x = normalize_tensor(batch["image"].to(device), cfg.model)
    if cfg.train.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    target, weight = batch["target"].to(device), batch["target_weight"].to(device)
    times = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        with autocast_context(device, cfg.train.cpu_bf16, cfg.train.amp):
            out = model(x)
        loss = loss_fn(out.float(), target, weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    times.sort()
    return Throughput(bs, times[len(times) // 2], data_seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", "-c")
    parser.add_argument("--set", "-s", action="append", default=[], dest="overrides")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    cfg = load_config(args.config, args.overrides)
    r = measure(cfg, steps=args.steps)
    resolved = resolve(cfg)
    m, t = resolved.model, resolved.train
    typer.echo(f"{m.backbone} {m.input_size[0]}x{m.input_size[1]} batch {r.batch_size} threads {t.threads} "
               f"bf16 {t.cpu_bf16} channels_last {t.channels_last}: step {r.step_seconds:.2f} s = "
               f"{r.images_per_s:.1f} img/s; data {r.data_seconds_per_batch:.3f} s per batch "
               f"({100 * r.data_fraction:.1f}% of data + step)")


if __name__ == "__main__":
    main()

"""Training throughput on the CPU: images per second of the default and ResNet-50 presets, fp32 and bf16 autocast.

    PYTHONPATH=. python benchmarks/bench_training.py --json benchmarks/results/training.json
    PYTHONPATH=. python benchmarks/bench_training.py --presets default --steps 3

Each measurement is train/throughput.py's: forward + backward + Adam on one batch already in memory (the
preset's batch size, channels_last as the preset sets it), the median of ``--steps`` timed steps after a
warm-up step, plus the cost of building one batch from the data (single process). Only the autocast setting
changes between the fp32 and bf16 rows. Speed does not depend on the weights or the images, so the ResNet-50
preset (MPII images, ImageNet weights: neither is available here) runs with random weights on LSP train images
mapped to its MPII-16 joints.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import command_line, finish, machine

PRESETS = {
    "default": (REPO / "train/configs/default_mnv2.yaml", []),
    "resnet50_paper": (REPO / "train/configs/resnet50_paper.yaml",
                       ["model.backbone_init=random", "data.train=[{kind: lsp, path: data/lsp, split: train}]",
                        "data.val=[]"]),
}
PRECISIONS = {"fp32": ["train.cpu_bf16=false"], "bf16": ["train.cpu_bf16=true"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    p.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=list(PRECISIONS))
    p.add_argument("--steps", type=int, default=3, help="timed steps per measurement (after one warm-up step)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=None, help="override the presets' batch size (32)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import torch

    from train.config import load_config, resolve
    from train.throughput import measure

    result = {"benchmark": "training", "command": command_line(), "machine": machine(), "rows": []}
    print(f"{'preset':<16}{'precision':<10}{'input':>9}{'batch':>6}{'step s':>8}{'img/s':>8}{'data s/batch':>13}")
    for preset in args.presets:
        path, overrides = PRESETS[preset]
        for precision in args.precisions:
            extra = [f"train.threads={args.threads}", "train.device=cpu", *PRECISIONS[precision]]
            if args.batch_size:
                extra.append(f"train.batch_size={args.batch_size}")
            cfg = resolve(load_config(path, [*overrides, *extra]))
            r = measure(cfg, steps=args.steps)
            row = {"preset": preset, "precision": precision, "backbone": cfg.model.backbone,
                   "input_size": list(cfg.model.input_size), "batch_size": r.batch_size,
                   "channels_last": cfg.train.channels_last, "threads": cfg.train.threads,
                   "step_s": r.step_seconds, "images_per_s": r.images_per_s,
                   "data_s_per_batch": r.data_seconds_per_batch, "data_fraction": r.data_fraction}
            result["rows"].append(row)
            w, h = cfg.model.input_size
            print(f"{preset:<16}{precision:<10}{f'{w}x{h}':>9}{r.batch_size:>6}{r.step_seconds:>8.2f}"
                  f"{r.images_per_s:>8.1f}{r.data_seconds_per_batch:>13.3f}", flush=True)
    result["machine"]["torch"] = torch.__version__
    finish(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

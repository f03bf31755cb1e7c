"""DDP on the CPU: two gloo processes train on different shards and end with identical weights."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch.multiprocessing as mp

TINY = [
    "model.backbone_init=random", "model.input_size=[64, 64]", "model.heatmap_size=[16, 16]",
    "model.deconv_filters=16",
    "data.train=[{kind: lsp, path: data/lsp, split: train, limit: 16}]",
    "data.val=[{kind: lsp, path: data/lsp, split: test, limit: 4, crop: full_image}]",
    "train.batch_size=8", "train.epochs=2", "train.progress=false", "train.threads=1", "train.device=cpu",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, shared: str, out: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank)})
    from train.config import load_config
    from train.engine import fit

    result = fit(load_config(None, TINY + [f"data.root={shared}"]), Path(out) / "run")
    (Path(out) / f"digest_{rank}.txt").write_text(result.weights_digest)


@pytest.mark.slow
def test_two_gloo_ranks_hold_identical_weights(shared_dir, require_data, tmp_path):
    require_data(shared_dir / "data/lsp/joints.mat")
    mp.start_processes(_worker, args=(2, _free_port(), str(shared_dir), str(tmp_path)), nprocs=2, join=True,
                       start_method="spawn")
    d0, d1 = (tmp_path / "digest_0.txt").read_text(), (tmp_path / "digest_1.txt").read_text()
    assert d0 == d1 and len(d0) == 64
    # Only rank 0 writes the run folder, and it saw both epochs.
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert len(log) == 3 and (tmp_path / "run" / "last.pt").is_file()

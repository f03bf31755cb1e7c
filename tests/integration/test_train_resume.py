"""Resuming from last.pt continues the same run: the weights equal those of an uninterrupted run."""

from __future__ import annotations

import csv

import torch

from rehab.core.machine import cpu_name
from tests.tiny_train import TINY_TRAIN
from train.config import load_config
from train.engine import fit
from train.plots import read_log

TINY = TINY_TRAIN + ["augment.preset=strong", "optim.lr_milestones=[70]"]


def test_resume_matches_an_uninterrupted_run(shared_dir, require_data, tmp_path):
    require_data(shared_dir / "data/lsp/joints.mat")
    base = TINY + [f"data.root={shared_dir}"]
    fit(load_config(None, base + ["train.epochs=2"]), tmp_path / "straight")
    fit(load_config(None, base + ["train.epochs=1"]), tmp_path / "split")
    # Resume the one-epoch run with the epoch count raised to 2 (LR milestones re-scale to 2 epochs).
    # A log written before rows named their device (a run started by older code) is resumed as it is.
    log = tmp_path / "split" / "log.csv"
    with log.open(newline="") as fh:
        old_rows = list(csv.DictReader(fh))
    with log.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[k for k in old_rows[0] if k != "device"])
        writer.writeheader()
        writer.writerows([{k: v for k, v in r.items() if k != "device"} for r in old_rows])
    saved = torch.load(tmp_path / "split" / "last.pt", weights_only=False)["config"]
    saved["train"]["epochs"] = 2
    from train.config import config_from_saved

    fit(config_from_saved(saved), tmp_path / "split", resume=True)
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "split" / "last.pt", weights_only=False)
    assert a["epoch"] == b["epoch"] == 1
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 2
    assert a["optimizer"]["param_groups"][0]["lr"] == b["optimizer"]["param_groups"][0]["lr"]
    la, lb = read_log(tmp_path / "straight" / "log.csv"), read_log(tmp_path / "split" / "log.csv")
    assert list(lb["epoch"]) == [1, 2]
    assert la["train_loss"].tolist() == lb["train_loss"].tolist()
    assert la["val_pck"].tolist() == lb["val_pck"].tolist()
    # each epoch's row says on which CPU (and in which precision) it ran; the old row has no entry
    with log.open(newline="") as fh:
        devices = [r["device"] for r in csv.DictReader(fh)]
    assert devices[0] == "" and cpu_name() in devices[1] and "threads" in devices[1]
    # best.pt is chosen by the validation PCK, recorded under its name, equal to the best logged epoch.
    best = torch.load(tmp_path / "split" / "best.pt", weights_only=False)
    assert best["best_metric_name"] == b["best_metric_name"] == "val_pck"
    assert round(best["best_metric"], 3) == max(lb["val_pck"])

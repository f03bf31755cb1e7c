"""What best.pt is chosen by: the validation metric (higher is better) or, without validation, the training
loss (lower is better), each kept in its own units and name, also across checkpoints written before the name."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("torch")

from train.config import load_config  # noqa: E402
from train.engine import TRAIN_LOSS, checkpoint_best, is_better, selection_metric  # noqa: E402


def test_selection_follows_the_configured_validation_metric():
    assert selection_metric(load_config(None, []), validates=True) == "val_pck"
    assert selection_metric(load_config(None, ["eval.val_metric=pckh"]), validates=True) == "val_pckh"
    assert selection_metric(load_config(None, []), validates=False) == TRAIN_LOSS


def test_better_means_higher_pck_and_lower_loss():
    assert is_better("val_pck", 31.0, 30.0) and not is_better("val_pck", 29.0, 30.0)
    assert is_better(TRAIN_LOSS, 0.002, 0.003) and not is_better(TRAIN_LOSS, 0.004, 0.003)
    assert is_better("val_pck", 0.0, math.nan) and is_better(TRAIN_LOSS, 9.0, math.nan)


def test_checkpoint_best_reads_named_and_older_checkpoints():
    assert checkpoint_best({"best_metric": 41.5, "best_metric_name": "val_pck"}, "val_pck") == 41.5
    assert checkpoint_best({"best_metric": 0.0021, "best_metric_name": TRAIN_LOSS}, TRAIN_LOSS) == 0.0021
    # Before the name: -train_loss (< 0) in runs without validation, the validation metric otherwise.
    assert checkpoint_best({"best_metric": -0.0021}, TRAIN_LOSS) == pytest.approx(0.0021)
    assert checkpoint_best({"best_metric": 41.5}, "val_pck") == 41.5
    # A run resumed to keep the best of something else starts that afresh instead of comparing PCK to a loss.
    assert math.isnan(checkpoint_best({"best_metric": -0.0021}, "val_pck"))
    assert math.isnan(checkpoint_best({"best_metric": 41.5, "best_metric_name": "val_pck"}, "val_pckh"))
    assert math.isnan(checkpoint_best({"best_metric": -math.inf}, "val_pck"))

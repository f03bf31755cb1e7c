"""A short CPU run on 64 real LSP images: the loss falls and PCK on those images rises (overfitting)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.tiny_train import OVERFIT_EPOCHS, OVERFIT_TRAIN


@pytest.mark.slow
def test_short_run_overfits_64_lsp_images(shared_dir, require_data, tmp_path, record_property):
    require_data(shared_dir / "data/lsp/joints.mat")
    require_data(shared_dir / "weights/mobilenet_v2-b0353104.pth")
    torch = pytest.importorskip("torch", reason="training needs the [train] extra")
    from train.config import data_root, load_config, resolve
    from train.engine import fit, seed_everything
    from train.predict import evaluate_model
    from train.model import build_model
    from train.plots import read_log

    cfg = load_config(None, OVERFIT_TRAIN + [f"data.root={shared_dir}"])
    resolved = resolve(cfg)
    torch.set_num_threads(resolved.train.threads)
    seed_everything(resolved.train.seed)  # the same initial weights fit() starts from
    initial = build_model(resolved.model, data_root=data_root(resolved))
    before = evaluate_model(initial, resolved, resolved.data.val, progress=False)[0].pck["mean"]
    start = time.perf_counter()
    fit(cfg, tmp_path / "run")
    log = read_log(tmp_path / "run" / "log.csv")
    record_property("overfit", f"{time.perf_counter() - start:.0f} s, loss {log['train_loss'][0]:.2e} -> "
                               f"{log['train_loss'][-1]:.2e}, PCK {before:.1f} -> {log['val_pck'][-1]:.1f}")
    assert len(log["epoch"]) == OVERFIT_EPOCHS
    assert log["train_loss"][-1] < 0.6 * log["train_loss"][0]
    assert np.all(np.isnan(log["val_pck"][:-1]))
    after = log["val_pck"][-1]
    assert after > before + 15, (before, after)
    assert (tmp_path / "run" / "best.pt").is_file() and (tmp_path / "run" / "config.yaml").is_file()

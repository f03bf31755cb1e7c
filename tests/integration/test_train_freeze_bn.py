"""train.freeze_bn: fine-tuning keeps the checkpoint's BatchNorm statistics while the weights still learn."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from tests.tiny_train import TINY_TRAIN  # noqa: E402
from train.config import load_config  # noqa: E402
from train.engine import fit  # noqa: E402

TINY = TINY_TRAIN + ["augment.preset=strong", "train.cpu_bf16=false", "train.epochs=1", "optim.lr_milestones=[]"]


def _bn_stats(state: dict) -> dict:
    return {k: v for k, v in state.items() if k.endswith(("running_mean", "running_var"))}


def test_freeze_bn_keeps_running_statistics_and_still_trains(shared_dir, require_data, tmp_path):
    require_data(shared_dir / "data/lsp/joints.mat")
    base = TINY + [f"data.root={shared_dir}"]
    fit(load_config(None, base), tmp_path / "source")
    source = torch.load(tmp_path / "source" / "last.pt", weights_only=False)["model"]
    tuned = {}
    for freeze in (True, False):
        run = tmp_path / f"ft_{freeze}"
        fit(load_config(None, base + [f"finetune.checkpoint={tmp_path / 'source' / 'last.pt'}",
                                      f"train.freeze_bn={str(freeze).lower()}",
                                      "data.train=[{kind: lsp, path: data/lsp, split: train, start: 100, limit: 16}]"]),
            run)
        tuned[freeze] = torch.load(run / "last.pt", weights_only=False)["model"]

    stats = _bn_stats(source)
    assert stats, "the network has BatchNorm layers"
    for key, value in stats.items():
        assert torch.equal(tuned[True][key], value), key
    assert any(not torch.equal(tuned[False][k], v) for k, v in stats.items())
    weights = [k for k, v in source.items() if v.dtype.is_floating_point and k not in stats and v.dim() == 4]
    assert any(not torch.equal(tuned[True][k], source[k]) for k in weights)
    bn_affine = [k.replace("running_mean", "weight") for k in stats if k.endswith("running_mean")]
    assert any(not torch.equal(tuned[True][k], source[k]) for k in bn_affine)

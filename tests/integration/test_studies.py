"""The study runner on a tiny real study: 2 arms, a few steps on real LSPET/LSP images.

Checks that the report is complete, that its numbers equal a direct evaluation of the arms' checkpoints,
that an interrupted arm resumes from its last.pt, and that identical arms give p = 1 in the paired tests.
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from typer.testing import CliRunner

from rehab.core.metrics import PCKResult, paired_test
from train.cli import app
from train.config import SourceConfig, config_from_saved, resolve, to_dict
from train.dataset import build_source_dataset
from train.engine import fit
from train.predict import evaluate_model, predict
from train.model import load_checkpoint
from train.studies import stats, study_config_from_cli
from train.studies.config import plan_arms, resolve_domains
from train.studies.report import build_report

runner = CliRunner()

# Study keys, then the training config of every arm: a small random-init network at 64x64 for seconds of CPU.
TINY = [
    "epochs=2", "arms=[none, strong]", "baseline=none", "source_train_limit=40", "source_test_limit=16",
    "target_test_limit=16", "val_limit=8", "n_boot=200",
    "model.backbone_init=random", "model.input_size=[64, 64]", "model.heatmap_size=[16, 16]",
    "model.deconv_filters=16", "train.batch_size=8", "train.threads=1", "train.progress=false",
    # A few steps from random weights rarely land within 0.2 torso: wide thresholds make the scores non-zero,
    # so that comparing them with a direct evaluation means something.
    "eval.pck_alpha=1.0", "eval.pckh_alpha=2.0",
]
BUDGET = 64  # images per arm: 2 epochs of 4 steps of 8
# Report values are rounded to 3 decimals.
ROUNDING = 1e-3


def _args(shared_dir, out, extra: list[str] = ()) -> list[str]:
    sets = [arg for item in TINY + [f"data.root={shared_dir}", *extra] for arg in ("--set", item)]
    return ["study", "augmentation", "--source", "lspet", "--target", "lsp", "--budget", str(BUDGET), *sets,
            "--out", str(out)]


def _interrupted_arm(shared_dir, out, arm: str) -> str:
    """Leave ``arm`` as a run stopped after its first epoch (last.pt of epoch 1 of 2); returns its log row."""
    cfg = study_config_from_cli("augmentation", overrides=[*TINY, f"data.root={shared_dir}"], source="lspet",
                                target="lsp", budget=BUDGET)
    plan = next(p for p in plan_arms(cfg, resolve_domains(cfg, shared_dir)) if p.name == arm)
    one_epoch = config_from_saved(to_dict(plan.train))
    one_epoch.train.epochs = 1
    run_dir = out / "arms" / arm
    fit(one_epoch, run_dir)
    ckpt = torch.load(run_dir / "last.pt", weights_only=False)
    ckpt["config"]["train"]["epochs"] = 2  # as if the two-epoch arm had been stopped after epoch 1
    torch.save(ckpt, run_dir / "last.pt")
    return (run_dir / "log.csv").read_text().splitlines()[1]


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory, shared_dir, require_data):
    for path in ("data/lsp/joints.mat", "data/lspet/joints.mat"):
        require_data(shared_dir / path)
    out = tmp_path_factory.mktemp("study") / "augmentation"
    first_epoch_row = _interrupted_arm(shared_dir, out, "strong")
    result = runner.invoke(app, _args(shared_dir, out))
    assert result.exit_code == 0, result.output
    out.joinpath("first_epoch_row.txt").write_text(first_epoch_row)
    return out


def test_report_is_complete(tiny_study):
    report = tiny_study / "report"
    names = {p.name for p in report.iterdir()}
    assert {"report.json", "README.md", "bars_pck.png", "bars_pckh.png", "per_joint_source.png",
            "per_joint_target.png", "curves.png", "joints_over_epochs_none.png",
            "joints_over_epochs_strong.png"} <= names
    rep = json.loads((report / "report.json").read_text())
    assert [a["run_id"] for a in rep["arms"]] == ["none", "strong"]
    assert rep["domains"]["source"]["test"].startswith("lspet im09501-im10000")
    assert rep["domains"]["target"]["test"].startswith("lsp im1001-im2000")
    assert rep["alphas"] == {"pck": 1.0, "pckh": 2.0}
    assert any(arm["pck"]["target"]["mean"] > 0 for arm in rep["arms"])
    for arm in rep["arms"]:
        assert arm["training"]["images_seen"] == BUDGET
        for metric in ("pck", "pckh"):
            for col in ("source", "target", "average"):
                mean, (low, high) = arm[metric][col]["mean"], arm[metric][col]["ci"]
                assert low - ROUNDING <= mean <= high + ROUNDING
            assert len(arm[metric]["target"]["per_joint"]) == 14
    assert len(arm["pck"]["target"]["joints_in_mean"]) == 12
    (paired,) = rep["paired"]
    assert paired["run_id"] == "strong" and paired["baseline"] == "none"
    assert 0 < paired["pck"]["average"]["p_value"] <= 1
    assert rep["final"]["run_id"] == "strong"
    md = (report / "README.md").read_text()
    assert "| none (baseline) |" in md and "Paired differences" in md and "Per joint, target" in md


def test_report_numbers_match_a_direct_evaluation_of_the_checkpoints(tiny_study, shared_dir):
    rep = json.loads((tiny_study / "report" / "report.json").read_text())
    for arm in rep["arms"]:
        record = json.loads((tiny_study / "arms" / arm["run_id"] / "arm.json").read_text())
        model, cfg, _ = load_checkpoint(tiny_study / "arms" / arm["run_id"] / "last.pt")
        cfg.data.root = str(shared_dir)
        cfg = resolve(cfg)
        direct = {}
        for role in ("source", "target"):
            (direct[role],) = evaluate_model(model, cfg, [SourceConfig(**record["test_sets"][role])], progress=False)
            assert direct[role].num_images == 16
            assert arm["pck"][role]["mean"] == pytest.approx(direct[role].pck["mean"], abs=ROUNDING)
            assert arm["pckh"][role]["mean"] == pytest.approx(direct[role].pckh["mean"], abs=ROUNDING)
            for joint, value in direct[role].pck["per_joint"].items():
                if not math.isnan(value):  # NaN for joints never visible in 16 images
                    assert arm["pck"][role]["per_joint"][joint] == pytest.approx(value, abs=ROUNDING)
            # The saved predictions are the checkpoint's keypoints on the same images.
            ds = build_source_dataset(cfg, SourceConfig(**record["test_sets"][role]), train=False)
            pred = predict(model, DataLoader(ds, batch_size=8), cfg.model, torch.device("cpu"),
                           cpu_bf16=cfg.train.cpu_bf16, channels_last=cfg.train.channels_last, progress=False)
            with np.load(tiny_study / "arms" / arm["run_id"] / f"predictions_{role}.npz") as saved:
                np.testing.assert_allclose(saved["keypoints_px"], pred.keypoints_px, atol=1e-4)
                assert list(saved["entries"]) == [r.entry for r in ds.records]
        average = (direct["source"].pck["mean"] + direct["target"].pck["mean"]) / 2
        assert arm["pck"]["average"]["mean"] == pytest.approx(average, abs=ROUNDING)


def test_interrupted_arm_resumed_and_finished_arms_are_skipped(tiny_study, shared_dir):
    log = (tiny_study / "arms" / "strong" / "log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in log[1:]] == ["1", "2"]
    # Epoch 1 is the row written before the interruption (its timing fields would differ if it were re-run).
    assert log[1] == (tiny_study / "first_epoch_row.txt").read_text()
    assert torch.load(tiny_study / "arms" / "strong" / "last.pt", weights_only=False)["epoch"] == 1
    before = (tiny_study / "arms" / "none" / "last.pt").stat().st_mtime_ns
    result = runner.invoke(app, _args(shared_dir, tiny_study))
    assert result.exit_code == 0, result.output
    assert (tiny_study / "arms" / "none" / "last.pt").stat().st_mtime_ns == before


def test_identical_arms_give_p_one(tiny_study, shared_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_study, copy, ignore=shutil.ignore_patterns("*.pt"))
    for role in ("source", "target"):
        shutil.copy(copy / "arms" / "none" / f"predictions_{role}.npz",
                    copy / "arms" / "strong" / f"predictions_{role}.npz")
    result = runner.invoke(app, _args(shared_dir, copy, ["n_boot=500"]) + ["--report-only"])
    assert result.exit_code == 0, result.output
    rep = build_report(copy)
    (paired,) = rep["paired"]
    for metric in ("pck", "pckh"):
        for col in ("source", "target", "average"):
            assert paired[metric][col]["diff"] == 0
            assert paired[metric][col]["p_value"] == pytest.approx(1.0)


def test_average_statistics_agree_with_the_core_on_one_test_set():
    rng = np.random.default_rng(3)
    visible = rng.random((300, 12)) < 0.9
    correct_a = (rng.random((300, 12)) < 0.7) & visible
    correct_b = (rng.random((300, 12)) < 0.6) & visible

    def result(correct):
        counts = visible.sum(0)
        return PCKResult(100.0 * correct.sum(0) / counts, 100.0 * correct.sum() / visible.sum(), counts, correct,
                         visible, np.ones(12, bool), 0.2)

    a, b = result(correct_a), result(correct_b)
    ours = stats.paired_average([a], [b], n_boot=2000, ci=0.95, seed=0)
    core = paired_test(correct_a, correct_b, visible, n_boot=2000, seed=0)
    assert ours.diff == pytest.approx(core.diff)
    assert ours.ci_low == pytest.approx(core.ci_low, abs=1.0) and ours.ci_high == pytest.approx(core.ci_high, abs=1.0)
    assert ours.p_value < 0.01 and core.p_value < 0.01
    same = stats.paired_average([a, b], [a, b], n_boot=500, ci=0.95, seed=0)
    assert same.diff == 0 and same.p_value == 1.0
    mean, low, high = stats.average_ci([a, b], n_boot=500, ci=0.95, seed=0)
    assert mean == pytest.approx((a.mean + b.mean) / 2) and low < mean < high

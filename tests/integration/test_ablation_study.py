"""The ablation study on a tiny real run: baseline + one arm, scored on the held-out training images only; an
interrupted arm resumes on a CPU without native bf16 (warning, fp32); a re-run with another budget is refused."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import train.predict
from train.cli import app
from train.config import config_from_saved, to_dict
from train.engine import fit
from train.studies import study_config_from_cli
from train.studies.config import plan_arms, resolve_domains

runner = CliRunner()

TINY = [
    "epochs=2", "source_test_limit=12", "target_test_limit=8", "val_limit=8", "n_boot=100",
    "model.backbone_init=random", "model.input_size=[64, 64]", "model.heatmap_size=[16, 16]",
    "model.deconv_filters=16", "train.batch_size=8", "train.threads=1", "train.progress=false",
    "eval.pck_alpha=1.0", "eval.pckh_alpha=2.0",
]
BUDGET = 64


def _args(shared_dir, out, budget: int = BUDGET, arm: str = "udp_dark") -> list[str]:
    sets = [arg for item in TINY + [f"data.root={shared_dir}", f"arms=[{arm}]"] for arg in ("--set", item)]
    return ["study", "ablation", "--budget", str(budget), *sets, "--out", str(out),
            "--report-dir", str(out / "reports" / arm)]


@pytest.fixture(scope="module")
def tiny_ablation(tmp_path_factory, shared_dir, require_data):
    for path in ("data/lsp/joints.mat", "data/lspet/joints.mat"):
        require_data(shared_dir / path)
    out = tmp_path_factory.mktemp("ablation") / "work"
    # The udp_dark arm stopped after epoch 1 of 2, as a session end leaves it.
    cfg = study_config_from_cli("ablation", overrides=[*TINY, f"data.root={shared_dir}"], budget=BUDGET)
    plan = next(p for p in plan_arms(cfg, resolve_domains(cfg, shared_dir)) if p.name == "udp_dark")
    one_epoch = config_from_saved(to_dict(plan.train))
    one_epoch.train.epochs = 1
    fit(one_epoch, out / "arms" / "udp_dark")
    ckpt = torch.load(out / "arms/udp_dark/last.pt", weights_only=False)
    ckpt["config"]["train"]["epochs"] = 2
    torch.save(ckpt, out / "arms/udp_dark/last.pt")
    return out


def test_resume_on_a_cpu_without_bf16_warns_falls_back_and_reports_on_held_out_images(
        tiny_ablation, shared_dir, monkeypatch, caplog):
    monkeypatch.setattr(train.predict, "cpu_has_native_bf16", lambda: False)
    train.predict._bf16_usable.cache_clear()
    try:
        with caplog.at_level(logging.WARNING):
            result = runner.invoke(app, _args(shared_dir, tiny_ablation))
    finally:
        train.predict._bf16_usable.cache_clear()
    assert result.exit_code == 0, result.output
    assert any("no native bf16" in r.getMessage() for r in caplog.records)
    log = (tiny_ablation / "arms/udp_dark/log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in log[1:]] == ["1", "2"]  # resumed: epoch 2 appended to epoch 1
    report = json.loads((tiny_ablation / "reports/udp_dark/report.json").read_text())
    assert [a["run_id"] for a in report["arms"]] == ["baseline", "udp_dark"]
    assert report["domains"]["source"]["test"].startswith("lspet im09501-im10000")
    assert report["domains"]["target"]["test"].startswith("lsp im0801-im1000")
    assert report["paper"] is None and report["paired"][0]["run_id"] == "udp_dark"
    for role, first, last in (("source", "lspet im09501", "lspet im10000"), ("target", "lsp im0801", "lsp im1000")):
        with np.load(tiny_ablation / f"arms/baseline/predictions_{role}.npz") as data:
            entries = data["entries"].astype(str)
        assert entries[0] == first and entries[-1] == last
        assert not any(e.startswith("lsp im1") and int(e[-4:]) > 1000 for e in entries)  # no LSP test image
    md = (tiny_ablation / "reports/udp_dark/README.md").read_text()
    assert "LSP test (im1001-im2000) is read by no arm" in md and "The paper, for reference" not in md
    saved = json.loads((tiny_ablation / "arms/udp_dark/arm.json").read_text())
    assert saved["digest"]


def test_a_rerun_with_another_budget_is_refused(tiny_ablation, shared_dir):
    result = runner.invoke(app, _args(shared_dir, tiny_ablation, budget=2 * BUDGET))
    assert result.exit_code != 0
    assert "holds a run of a different config" in result.output


def test_an_evaluate_only_arm_scores_the_baselines_model_with_dark_decoding(tiny_ablation, shared_dir, monkeypatch):
    args = _args(shared_dir, tiny_ablation, arm="dark_decode")
    # The baseline was scored in fp32 above; the same precision here, so only the decoding differs.
    monkeypatch.setattr(train.predict, "cpu_has_native_bf16", lambda: False)
    train.predict._bf16_usable.cache_clear()
    try:
        result = runner.invoke(app, args)
    finally:
        train.predict._bf16_usable.cache_clear()
    assert result.exit_code == 0, result.output
    arm = json.loads((tiny_ablation / "arms/dark_decode/arm.json").read_text())
    base = json.loads((tiny_ablation / "arms/baseline/arm.json").read_text())
    assert arm["checkpoint"] == base["checkpoint"] and arm["decode_set"] == ["model.heatmap_decoding=dark"]
    assert not (tiny_ablation / "arms/dark_decode/last.pt").exists()  # nothing trained
    with np.load(tiny_ablation / "arms/dark_decode/predictions_target.npz") as a, \
            np.load(tiny_ablation / "arms/baseline/predictions_target.npz") as b:
        moved = np.abs(a["keypoints_px"] - b["keypoints_px"])
        gt = b["gt_px"]
    # The same model's peaks, refined differently: DARK moves a coordinate at most 1 heatmap cell from the peak
    # and the quarter offset 0.25, so the two differ by at most 1.25 cells. A cell is the crop side / 16 here, and
    # the crop (the person's joint box, padded) is taken as at most twice the joints' extent.
    extent = (np.nanmax(gt, axis=1) - np.nanmin(gt, axis=1)).max(axis=1)
    cell = 2.0 * extent / 16
    assert moved.max() > 0
    assert np.all(moved <= 1.25 * cell[:, None, None] + 1e-6), (moved.max(), cell.min())
    md = (tiny_ablation / "reports/dark_decode/README.md").read_text()
    assert "evaluates baseline's final model (no training)" in md


def test_the_summary_has_one_row_per_ablation_against_the_baseline(tiny_ablation):
    result = runner.invoke(app, ["study-summary", str(tiny_ablation / "reports")])
    assert result.exit_code == 0, result.output
    text = (tiny_ablation / "reports/SUMMARY.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| arm")]
    assert [r.split(" | ")[0] for r in rows] == ["| baseline", "| [dark_decode](dark_decode/README.md)",
                                                  "| [udp_dark](udp_dark/README.md)"]
    assert "lspet im09501-im10000" in text and ("p = " in text or "p < " in text)
    empty = runner.invoke(app, ["study-summary", str(tiny_ablation / "arms")])
    assert empty.exit_code != 0 and "no ablation report.json" in empty.output

"""The model card generator: real model, real evaluation on a few LSP test images, notes kept on rewrite."""

from __future__ import annotations

import csv
import json

import pytest

from export.model_card import END, START, Step, merge, plot_curves, render
from rehab.pose_annotations import read_lsp
from rehab.accuracy import evaluate_pose_model
from rehab.runtime.model import PoseModel

FIELDS = ["epoch", "lr", "train_loss", "val_loss", "val_pck", "images_per_s", "data_fraction", "epoch_seconds"]


def _rows(n: int, lr_drop_at: int | None = None, start_pck: float = 50.0) -> list[dict]:
    return [{"epoch": str(i + 1), "lr": str(1e-4 if lr_drop_at and i >= lr_drop_at else 1e-3),
             "train_loss": str(0.002 - i * 1e-5), "val_loss": str(0.002), "val_pck": str(start_pck + i),
             "images_per_s": "50", "data_fraction": "0.03", "epoch_seconds": "1800"} for i in range(n)]


@pytest.fixture(scope="module")
def report(shared_dir, require_data):
    records = read_lsp(require_data(shared_dir / "data" / "lsp"), split="test")[:8]
    return evaluate_pose_model(PoseModel.load(), records, n_boot=50, progress=False)


MAIN, FINETUNE = "train/configs/default_mnv2.yaml", "train/configs/default_mnv2_finetune.yaml"
PEER = {"command": "python benchmarks/bench_peer.py", "machine": {"date_utc": "2026-11-26"},
        "lsp": {"mediapipe_version": "0.10.21",
                "mediapipe_full": {"pck": 75.3, "ci95": [73.0, 77.5], "found": 894, "ms_per_image": 18.0},
                "mediapipe_full_det0.1": {"pck": 79.2, "ci95": [77.2, 81.1], "found": 968, "ms_per_image": 19.0},
                "mediapipe_heavy": {"pck": 78.3, "ci95": [76.3, 80.5], "found": 893, "ms_per_image": 60.0}}}


def test_card_reports_measured_numbers_and_verdicts(report, tmp_path):
    model = PoseModel.load()
    steps = [Step(MAIN, _rows(4, lr_drop_at=2)), Step(FINETUNE, _rows(2, start_pck=60.0))]
    card = render(model, steps, report, "rehab evaluate ...", peer=PEER, curves_png="default_curves.png")
    assert f"**{report['pck']['mean']:.1f}**" in card
    # 6 epochs of 1800 s = 3.0 h
    assert "(3.0 h of training in all" in card
    # what each step did comes from its config: data, input size, LR schedule, where it started
    assert ("1. `train/configs/default_mnv2.yaml`: 4 epochs training 192x192 input on lspet all + lsp train, "
            "strong augmentation, Adam 0.001 (x0.1 at epochs 26, 34)") in card
    assert ("2. `train/configs/default_mnv2_finetune.yaml`: 2 epochs training on lsp train, strong augmentation, "
            "Adam 1e-05 (constant), BatchNorm statistics frozen, from the previous step's model; 1.0 h") in card
    # the validation images are named, and a set that overlaps the test says so
    assert "validation PCK@0.2 on lsp test, 300 evenly spaced, whole image: best 53.0 at epoch 4" in card
    assert "saw part of the test set" in card
    # the PCK target is MediaPipe full at its best (the higher of its two detection thresholds)
    verdict = "met" if report["pck"]["mean"] > 79.2 else "**missed**"
    assert (f"above MediaPipe Pose full at its best (79.2, `mediapipe_full_det0.1`, same images and protocol) | "
            f"{report['pck']['mean']:.1f} | {verdict} |") in card
    knee, elbow = (report["angles_deg"][g]["median_abs_deg"] for g in ("knee", "elbow"))
    assert f"| median angle error knee <= 6 deg, elbow <= 10 deg | knee {knee:.1f}, elbow {elbow:.1f} deg |" in card
    for joint in report["pck"]["per_joint"]:
        assert f"| {joint} |" in card
    png = plot_curves(steps, tmp_path / "curves.png", 79.2)
    assert png.stat().st_size > 5000


def test_a_validation_set_held_out_of_training_is_named_without_the_test_warning(report):
    steps = [Step("train/configs/default_v2_256.yaml", _rows(3))]
    card = render(PoseModel.load(), steps, report, "cmd")
    assert ("validation PCK@0.2 on lsp train, records 801-end, whole image + lspet all, records 9501-end") in card
    assert "training 256x256 input on lspet all, records 1-9500 + lsp train, records 1-800" in card
    assert "saw part of the test set" not in card
    assert "not compared (no MediaPipe measurement given)" in card


def test_the_ablation_section_reads_the_committed_reports(report):
    card = render(PoseModel.load(), [Step(MAIN, _rows(2))], report, "cmd", ablations=["docs/ablations/budget36k"])
    assert "## What each ablation bought" in card
    row = next(line for line in card.splitlines() if line.startswith("| input256 |"))
    assert row.endswith("| +4.9 [+3.5, +6.2] | yes |")
    assert next(line for line in card.splitlines() if line.startswith("| head256 |")).endswith("| no |")


def test_a_step_argument_without_its_config_or_run_is_refused(tmp_path):
    import typer

    from export.model_card import _step

    with pytest.raises(typer.BadParameter, match="CONFIG=RUN"):
        _step("train/configs/default_mnv2.yaml")
    with pytest.raises(typer.BadParameter, match="no config file"):
        _step(f"{tmp_path}/missing.yaml={tmp_path}")
    with pytest.raises(FileNotFoundError, match="no training log"):
        _step(f"{MAIN}={tmp_path}")


def test_rewrite_keeps_what_engineers_wrote_around_the_generated_block(report):
    model = PoseModel.load()
    first = render(model, [Step(MAIN, _rows(2))], report, "cmd")
    assert first.count(START) == 1 and first.count(END) == 1
    notes = "\n\n## Status\n\nHand-written status that must survive.\n"
    existing = merge("", first).rstrip("\n") + notes
    regenerated = merge(existing, render(model, [Step(MAIN, _rows(3))], report, "cmd2"))
    assert "Hand-written status that must survive." in regenerated
    assert "cmd2" in regenerated and "    cmd\n" not in regenerated
    assert regenerated.count(START) == 1 and regenerated.startswith("# Model card")


def test_peer_rows_come_from_the_benchmark_json(report):
    card = render(PoseModel.load(), [Step(MAIN, _rows(1))], report, "cmd", peer=json.loads(json.dumps(PEER)))
    full = "| MediaPipe Pose 0.10.21 full (detection >= 0.5, its default) | 75.3 | 73.0-77.5 | 894/1000 | 18.0 |"
    best = "| MediaPipe Pose 0.10.21 full (detection >= 0.1) | 79.2 | 77.2-81.1 | 968/1000 | 19.0 |"
    assert full in card and best in card
    assert card.index(full) < card.index(best) < card.index("MediaPipe Pose 0.10.21 heavy")


def test_log_reader_rejects_a_missing_or_empty_log(tmp_path):
    from export.model_card import read_log

    with pytest.raises(FileNotFoundError, match="no training log"):
        read_log(tmp_path)
    with (tmp_path / "log.csv").open("w", newline="") as f:
        csv.writer(f).writerow(FIELDS)
    with pytest.raises(ValueError, match="no epoch rows"):
        read_log(tmp_path)


def test_presence_section_reports_the_held_out_numbers_and_pck_before_after(report):
    model = PoseModel.load()
    if not model.info.has_presence:
        pytest.skip("the shipped model has no presence output")
    rows = [dict(r, train_heatmap_loss="0.0005", train_presence_loss="0.1", val_pck="", val_loss="")
            for r in _rows(3)]
    summary = {"crops": 10, "persons": 6, "auc": 0.9987,
               "at_threshold": {"recall": 0.995, "specificity": 0.9712, "accuracy": 0.98},
               "subsets": {"lsp test person crops": {"crops": 6, "person": True, "called_person": 1.0,
                                                     "median_presence": 0.99}}}
    presence = {"model": "rehab/models/default.onnx", "threshold": 0.3, "rule": "highest threshold ...",
                "validation": summary, "test": dict(summary, auc=0.9991)}
    before = json.loads(json.dumps(report))
    before["pck"]["mean"] = report["pck"]["mean"] + 0.4
    steps = [Step(MAIN, _rows(2)), Step("train/configs/default_mnv2_presence_tower.yaml", rows)]
    card = render(model, steps, report, "cmd", presence=presence, before=before)
    assert "## Presence output" in card and "`rehab.presence_threshold`" in card
    assert "| **test** (LSP test, synthetic, cam01) | 10 | 6 | 0.99910 | 99.5% | 97.1% | 98.0% |" in card
    assert f"-> {report['pck']['mean']:.1f} (-0.4)" in card
    assert ("2. `train/configs/default_mnv2_presence_tower.yaml`: 3 epochs training the presence output alone on "
            "person and person-free crops (pose weights frozen), from the previous step's model") in card
    assert "Trained by `train/configs/default_mnv2_presence_tower.yaml`" in card
    assert "a tower of its own, a trainable copy of the backbone's last 4 stages" in card

"""The CLI end to end on tiny runs: fit, evaluate (JSON), finetune (before/after table), plots, bad input."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tests.tiny_train import TINY_TRAIN
from train.cli import app

runner = CliRunner()

TINY = TINY_TRAIN + ["train.epochs=2"]


def _sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, shared_dir):
    if not (shared_dir / "data/lsp/joints.mat").exists():
        pytest.skip("LSP data not found")
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    result = runner.invoke(app, ["fit", *_sets(TINY + [f"data.root={shared_dir}"]), "--run-dir", str(run_dir)])
    assert result.exit_code == 0, result.output
    return run_dir


def test_fit_writes_log_and_checkpoints(tiny_run, require_data, shared_dir):
    require_data(shared_dir / "data/lsp/joints.mat")
    assert {"log.csv", "last.pt", "best.pt", "config.yaml"} <= {p.name for p in tiny_run.iterdir()}
    header = (tiny_run / "log.csv").read_text().splitlines()[0].split(",")
    assert "val_pck" in header and "pck_left_knee" in header and "data_fraction" in header


def test_evaluate_writes_json_with_pck_pckh_and_angles(tiny_run, tmp_path, shared_dir):
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["evaluate", "--checkpoint", str(tiny_run / "best.pt"), "-d", "lsp:test:8:full_image",
                                 "-d", "mpii_json:valid", "--flip", "--out", str(out),
                                 "--set", f"data.root={shared_dir}"])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    lsp, mpii = data["reports"]
    assert lsp["dataset"] == "lsp:test:8:full_image" and lsp["num_images"] == 8 and lsp["flip_test"]
    assert lsp["images"] == "lsp 8 images in im1001-im2000 (not contiguous)"  # which images the number is from
    assert len(lsp["pck"]["joints_in_mean"]) == 12 and 0 <= lsp["pck"]["mean"] <= 100
    assert set(lsp["angles_deg"]) == {"knee", "elbow", "hip", "shoulder"}
    # Plumbing only: what a 2-epoch model predicts decides how many angles are defined (a collapsed pose has
    # none); the angle maths is tested on known answers in tests/unit/test_train_evaluate.py.
    for err in lsp["angles_deg"].values():
        assert isinstance(err["count"], int) and 0 <= err["count"] <= 2 * lsp["num_images"]
        assert (err["median_abs_deg"] is None) == (err["count"] == 0)
    assert mpii["num_images"] == 5 and mpii["pckh"]["mean"] is not None  # PCKh on MPII-style data


def test_finetune_reports_source_and_target_before_and_after(tiny_run, tmp_path, shared_dir):
    sets = _sets([f"data.root={shared_dir}", "train.epochs=1", "train.batch_size=4", "train.progress=false",
                  "train.threads=1", "optim.lr=1e-4", "optim.lr_milestones=[]",
                  "data.train=[{kind: lsp, path: data/lsp, split: train, limit: 8}]",
                  "data.val=[{kind: lsp, path: data/lsp, split: test, limit: 8, crop: full_image}]",
                  "finetune.source_val=[{kind: mpii_json, path: data/fixtures/mpii/test_mpii.json}]"])
    result = runner.invoke(app, ["finetune", *sets, "--checkpoint", str(tiny_run / "best.pt"),
                                 "--run-dir", str(tmp_path / "ft")])
    assert result.exit_code == 0, result.output
    table = json.loads((tmp_path / "ft" / "finetune.json").read_text())["table"]
    assert [row["role"] for row in table] == ["source", "target"]
    assert all(k in table[0] for k in ("pck_before", "pck_after", "pckh_before", "pckh_after"))


def test_plots_write_pngs(tiny_run, tmp_path, shared_dir):
    evals = []
    for i in range(2):
        out = tmp_path / f"run{i}" / "eval.json"
        res = runner.invoke(app, ["evaluate", "--checkpoint", str(tiny_run / "last.pt"), "-d", "lsp:test:4",
                                  "--out", str(out), "--set", f"data.root={shared_dir}"])
        assert res.exit_code == 0, res.output
        evals.append(out)
    result = runner.invoke(app, ["plots", "--run", str(tiny_run), "-d", "lsp:test", "-d", "mpii:valid",
                                 "--compare", str(evals[0]), "--compare", str(evals[1]),
                                 "--data-root", str(shared_dir), "-o", str(tmp_path / "plots")])
    assert result.exit_code == 0, result.output
    names = {p.name for p in (tmp_path / "plots").iterdir()}
    assert {f"pck_epochs_{tiny_run.name}.png", "keypoint_spread.png", "missing_joints.png",
            "compare_pckh.png"} <= names
    assert all(p.stat().st_size > 5000 for p in (tmp_path / "plots").iterdir())


def test_unknown_config_key_is_a_clear_cli_error(tmp_path):
    result = runner.invoke(app, ["fit", "--set", "train.batchsize=4", "--run-dir", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "train.batchsize" in result.output and "batch_size" in result.output
    result = runner.invoke(app, ["fit", "--config", str(tmp_path / "missing.yaml"), "--run-dir", str(tmp_path / "x")])
    assert result.exit_code == 2 and "missing.yaml" in result.output

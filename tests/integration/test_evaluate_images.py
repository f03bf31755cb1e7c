"""`rehab evaluate` on real LSP images with the embedded model: the JSON and the table name the images."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from rehab.cli import app

runner = CliRunner()


def test_evaluate_a_held_out_range_names_it_in_json_and_table(tmp_path, shared_dir, require_data):
    root = require_data(shared_dir / "data/lsp")
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["evaluate", "--root", str(root), "--split", "train", "--images", "996-1000",
                                 "--threads", "1", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "lsp:train: lsp im0996-im1000 (5 images), flip test" in result.output
    data = json.loads(out.read_text())
    assert data["images"] == "lsp im0996-im1000 (5 images)" and data["num_images"] == 5
    bad = runner.invoke(app, ["evaluate", "--root", str(root), "--split", "train", "--images", "1001-2000"])
    assert bad.exit_code == 2 and "no image of this split is numbered 1001-2000" in bad.output

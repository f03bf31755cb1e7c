"""Write the model card of an exported model from what was measured: its metadata, the training log and an
evaluation report from `rehab evaluate --json`.

    python -m export.model_card --model rehab/models/default.onnx --run-dir RUN --eval EVAL.json \
        --out rehab/models/MODEL_CARD.md
"""

from __future__ import annotations

import csv
import json
import platform
from pathlib import Path

import typer

from rehab.runtime.model import PoseModel

LICENCE_NOTE = (
    "Trained on LSP and LSPET (Flickr images released for research use only). The weights inherit that "
    "restriction: research and evaluation use; check the dataset terms before any commercial deployment.")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _training_rows(run_dir: Path) -> list[dict]:
    log = run_dir / "log.csv"
    if not log.is_file():
        raise FileNotFoundError(f"no training log at {log}")
    with log.open() as f:
        return list(csv.DictReader(f))


def render(model: PoseModel, rows: list[dict], report: dict, command: str) -> str:
    info = model.info
    hours = sum(float(r["epoch_seconds"]) for r in rows) / 3600
    best = max(rows, key=lambda r: float(r["val_pck"]))
    pck, pckh = report["pck"], report["pckh"]
    lines = [
        f"# Model card: {model.path.name}",
        "",
        f"- Network: Simple Baselines, backbone `{info.backbone}`, input {info.input_size[0]}x{info.input_size[1]} "
        f"RGB, heatmaps {info.heatmap_size[0]}x{info.heatmap_size[1]}, {info.num_joints} joints "
        f"({', '.join(info.joint_names)}).",
        f"- Exported as {info.precision.upper()} ONNX with its preprocessing, skeleton and provenance in the file's "
        "metadata (`rehab.*` keys); the runtime reads them and hard-codes none.",
        f"- Training data and recipe: see `train/configs/default_mnv2.yaml`; {len(rows)} epochs logged, "
        f"{hours:.1f} h of training on {cpu_name()} ({platform.machine()}, 2 threads, no GPU).",
        f"- Best validation PCK@0.2 during training: {float(best['val_pck']):.1f} at epoch {best['epoch']} "
        "(300 LSP test images, whole image letterboxed).",
        "",
        f"## LSP test ({report['num_images']} images, whole image as input, flip test "
        f"{'on' if report['flip_test'] else 'off'})",
        "",
        "Measured with:",
        "",
        f"    {command}",
        "",
        f"PCK@{pck['alpha']} over the 12 limb joints (torso = annotated left shoulder to right hip, occluded joints "
        f"included): **{pck['mean']:.1f}** (95% CI {pck['ci95'][0]:.1f}-{pck['ci95'][1]:.1f}). "
        f"PCKh@{pckh['alpha']} (head segment neck to head top): {pckh['mean']:.1f}.",
        "",
        "| joint | PCK@0.2 | 95% CI | PCKh@0.5 |",
        "|---|---|---|---|",
    ]
    for joint, value in pck["per_joint"].items():
        ci = pck.get("per_joint_ci95", {}).get(joint)
        in_mean = joint in pck["joints_in_mean"]
        lines.append(f"| {joint} | {value:.1f}{'' if in_mean else ' (not in mean)'} | "
                     f"{f'{ci[0]:.1f}-{ci[1]:.1f}' if ci else '-'} | {pckh['per_joint'][joint]:.1f} |")
    lines += ["", "2-D joint-angle error, predicted vs annotated joints (all three joints annotated):", "",
              "| angle | median | mean | angles |", "|---|---|---|---|"]
    for group, err in report["angles_deg"].items():
        lines.append(f"| {group} | {err['median_abs_deg']:.1f} deg | {err['mean_abs_deg']:.1f} deg | {err['count']} |")
    lat = report.get("latency_ms", {})
    if lat:
        lines += ["", f"Latency of `PoseModel.predict` per image (preprocessing + ONNX Runtime + decoding, "
                      f"{', '.join(report['model']['providers'])}): median {lat['median']:.1f} ms, "
                      f"p90 {lat['p90']:.1f} ms, measured in the same run on a machine shared with other jobs."]
    lines += ["", "## Licence", "", LICENCE_NOTE, ""]
    return "\n".join(lines)


def main(model: Path = typer.Option(..., help="The exported .onnx model."),
         run_dir: Path = typer.Option(..., help="The training run folder (log.csv)."),
         eval_json: Path = typer.Option(..., "--eval", help="Report written by `rehab evaluate --json`."),
         out: Path = typer.Option(..., help="Where to write the card (markdown)."),
         command: str = typer.Option("rehab evaluate --root ../shared/data/lsp --split test --json EVAL.json",
                                     help="The evaluation command, quoted in the card.")) -> None:
    """Write a model card from measured numbers."""
    report = json.loads(eval_json.read_text())
    card = render(PoseModel.load(model), _training_rows(run_dir), report, command)
    out.write_text(card)
    typer.echo(f"wrote {out}")


if __name__ == "__main__":
    typer.run(main)

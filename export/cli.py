"""`rehab export` / `python -m export`: a training checkpoint -> a verified, self-describing .onnx file."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import typer

from rehab.cli_help import Command
from export.exporter import (
    DEFAULT_CALIBRATION_IMAGES,
    DEFAULT_EVAL_IMAGES,
    DEFAULT_VERIFY_IMAGES,
    MAX_INT8_PCK_DROP,
    DriftError,
    ExportOptions,
    export_checkpoint,
)
from export.onnx_export import DEFAULT_OPSET, MIN_OPSET
from export.variants import VariantError
from export.verify import VerificationError

DEFAULT_THREADS = ExportOptions().threads

app = typer.Typer(help="Export a training checkpoint to ONNX (verified against torch on real images).",
                  add_completion=False, no_args_is_help=True, rich_markup_mode=None)


def _read_metrics(path: Optional[Path]) -> dict | None:
    if path is None:
        return None
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise typer.BadParameter(f"metrics file not found: {path}", param_hint="--metrics") from None
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"{path} is not valid JSON: {exc}", param_hint="--metrics") from None
    if not isinstance(data, dict):
        raise typer.BadParameter(f"{path} must hold a JSON object of metric name -> value", param_hint="--metrics")
    return data


@app.command(cls=Command)
def export(
    checkpoint: Path = typer.Argument(..., help="A train/ checkpoint (last.pt / best.pt)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="The .onnx file (default: CHECKPOINT.onnx)."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Folder holding data/lsp for verification, "
                                             "calibration and evaluation (default: $REHAB_SHARED_DIR, else ../shared)."),
    fp16: bool = typer.Option(False, "--fp16/--no-fp16", help="Also write NAME.fp16.onnx (for CUDA)."),
    int8: bool = typer.Option(False, "--int8/--no-int8", help="Also write NAME.int8.onnx (static QDQ, for CPUs)."),
    opset: int = typer.Option(DEFAULT_OPSET, help=f"ONNX opset (>= {MIN_OPSET})."),
    verify_images: int = typer.Option(DEFAULT_VERIFY_IMAGES, help="LSP test images on which ONNX Runtime must match torch."),
    eval_images: int = typer.Option(DEFAULT_EVAL_IMAGES, help="Held-out LSP images for PCK@0.2 (0: skip; variants need it)."),
    eval_set: str = typer.Option("test", help="Where PCK is measured: test (LSP test, evenly spaced) or holdout (LSP "
                                 "train im0801-im1000, held out of the v2 recipe's training, so LSP test is read once)."),
    calibration_images: int = typer.Option(DEFAULT_CALIBRATION_IMAGES, help="LSP train images for INT8 calibration."),
    max_int8_drop: float = typer.Option(MAX_INT8_PCK_DROP, help="Refuse an INT8 file losing more PCK@0.2 points than this."),
    force: bool = typer.Option(False, "--force", help="Write the INT8 file even when it loses more than allowed."),
    subpixel: bool = typer.Option(True, "--subpixel/--no-subpixel",
                                  help="Rewrite the stride-2 4x4 deconvolutions as 2x2 Convs + DepthToSpace in every "
                                       "written file (same maths, checked on random inputs; faster, and INT8 can "
                                       "then quantise them). Recorded in the metadata (rehab.graph_rewrites)."),
    eval_flip_test: bool = typer.Option(False, "--eval-flip-test", help="Evaluate PCK with flip test."),
    metrics: Optional[Path] = typer.Option(None, help="JSON file of evaluation metrics to store in the metadata."),
    name: str = typer.Option("", help="Model name stored in the metadata (default: backbone_WxH_joints)."),
    presence_threshold: Optional[float] = typer.Option(
        None, help="For a model with a presence head: the probability at or above which a person counts as present "
                   "(stored as rehab.presence_threshold; default 0.5)."),
    presence_acquire_threshold: Optional[float] = typer.Option(
        None, help="For a model with a presence head: the higher probability a person not yet tracked needs to be "
                   "acquired (stored as rehab.presence_acquire_threshold; default: none, one threshold)."),
    threads: int = typer.Option(DEFAULT_THREADS, help="CPU threads for torch and ONNX Runtime during verification."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Export CHECKPOINT to ONNX, verify it against torch on real LSP images, optionally write FP16/INT8 variants."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    options = ExportOptions(opset=opset, verify_images=verify_images, eval_images=eval_images, eval_set=eval_set,
                            fp16=fp16, int8=int8,
                            calibration_images=calibration_images, max_int8_drop=max_int8_drop, force=force,
                            subpixel=subpixel, eval_flip_test=eval_flip_test, threads=threads, progress=progress)
    try:
        result = export_checkpoint(checkpoint, output, data_root, options, metrics=_read_metrics(metrics), name=name,
                                   presence_threshold=presence_threshold,
                                   presence_acquire_threshold=presence_acquire_threshold)
    except DriftError as exc:
        if exc.export is not None:
            typer.echo(exc.export.table())
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except (FileNotFoundError, ValueError, VerificationError, VariantError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"ONNX Runtime vs torch: {result.agreement.summary()}")
    typer.echo(result.table())

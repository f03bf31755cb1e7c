"""The one command line, `rehab`: each command parses its options, builds a config and calls one function.

Commands that need torch (train, export) live in their own packages and are loaded only when called, so
that the runtime CLI works on a machine without torch.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Optional

import typer

from rehab import batch_cli

app = typer.Typer(help="Rehabilitation pose monitor.", no_args_is_help=True, add_completion=False)

_FORWARD = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def _forward(module: str, prog: str, args: list[str]) -> None:
    try:
        sub = importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name and err.name.split(".")[0] in ("torch", "torchvision", "onnx", "onnxscript"):
            typer.echo(f"`{prog}` needs the training extras ({err.name} is missing): pip install -e '.[train]'", err=True)
            raise typer.Exit(2) from None
        raise
    sub.app(args=args, prog_name=prog)


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages.")) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")


@app.command(context_settings=_FORWARD, add_help_option=False)
def train(ctx: typer.Context) -> None:
    """Train, fine-tune, evaluate and plot pose networks (needs the [train] extra). See `rehab train --help`."""
    _forward("train.cli", "rehab train", list(ctx.args))


@app.command(context_settings=_FORWARD, add_help_option=False)
def export(ctx: typer.Context) -> None:
    """Export a checkpoint to a self-describing ONNX model (needs the [train] extra). See `rehab export --help`."""
    _forward("export.cli", "rehab export", list(ctx.args))


@app.command("app")
def app_command(
    port: int = typer.Option(8501, help="Port to listen on."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on; beyond localhost a password is required."),
    model: Optional[Path] = typer.Option(None, help="ONNX pose model (default: the embedded default model)."),
    data_dir: Optional[Path] = typer.Option(None, help="Folder of the session history and recordings."),
) -> None:
    """Start the therapist's dashboard (live sessions, video analysis, history)."""
    from rehab.app.launch import LaunchError, launch

    try:
        code = launch(host, port, model_path=model, data_dir=data_dir)
    except LaunchError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


@app.command()
def evaluate(
    dataset: str = typer.Option("lsp", help="Annotation layout: lsp (images/ + joints.mat)."),
    root: Path = typer.Option(..., help="Dataset folder, e.g. ../shared/data/lsp."),
    split: str = typer.Option("test", help="train (im0001-im1000), test (im1001-im2000) or all."),
    model: Optional[Path] = typer.Option(None, help="ONNX pose model (default: the embedded default model)."),
    limit: Optional[int] = typer.Option(None, min=1, help="Evaluate only the first N images of the split."),
    images: Optional[str] = typer.Option(None, "--images", help="Only the images numbered A-B in the split, e.g. "
                                         "801-1000 (im0801-im1000: the LSP train images held out for validation)."),
    flip_test: Optional[bool] = typer.Option(None, "--flip/--no-flip", help="Flip test (default: the model's)."),
    threads: Optional[int] = typer.Option(None, min=1, help="ONNX Runtime intra-op threads."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the full report as JSON here."),
) -> None:
    """PCK@0.2 (12 limb joints), PCKh@0.5 and joint-angle errors of a model on an annotated dataset."""
    from rehab.datasets import read_lsp
    from rehab.evaluation import evaluate_pose_model, format_report, select_numbered, write_json
    from rehab.runtime.model import PoseModel

    if dataset != "lsp":
        typer.echo(f"error: dataset {dataset!r} is not supported here; use lsp (or `rehab train evaluate`)", err=True)
        raise typer.Exit(2)
    try:
        records = read_lsp(root, split)
        if images is not None:
            records = select_numbered(records, images)
        records = records[:limit]
        pose_model = PoseModel.load(model, threads=threads)
        rep = evaluate_pose_model(pose_model, records, flip_test=flip_test, dataset=f"{dataset}:{split}")
    except (FileNotFoundError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(format_report(rep))
    if json_out is not None:
        write_json(rep, json_out)


app.command("process")(batch_cli.process_command)
app.command("exercises")(batch_cli.exercises_command)


def main() -> None:
    app()

"""The one command line, `rehab`: each command parses its options, builds a config and calls one function.

Commands that need torch (train, export) live in their own packages and are loaded only when called, so
that the runtime CLI works on a machine without torch.
"""

from __future__ import annotations

import importlib
import logging

import typer

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


def main() -> None:
    app()

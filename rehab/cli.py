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
from rehab.cli_help import Command

# Plain help (Click's layout): Rich markup would read "[train]" in a help text as a style tag and drop it.
app = typer.Typer(help="Rehabilitation pose monitor.", no_args_is_help=True, add_completion=False,
                  rich_markup_mode=None)


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


# Short helps fit the command list of an 80-column terminal, where Click would cut the docstrings short.
@app.command(context_settings=_FORWARD, add_help_option=False,
             short_help="Train and evaluate pose networks (needs the [train] extra).")
def train(ctx: typer.Context) -> None:
    """Train, fine-tune, evaluate and plot pose networks (needs the [train] extra). See `rehab train --help`."""
    _forward("train.cli", "rehab train", list(ctx.args))


@app.command(context_settings=_FORWARD, add_help_option=False,
             short_help="Export a checkpoint to ONNX (needs the [train] extra).")
def export(ctx: typer.Context) -> None:
    """Export a checkpoint to a self-describing ONNX model (needs the [train] extra). See `rehab export --help`."""
    _forward("export.cli", "rehab export", list(ctx.args))


@app.command("app", cls=Command, short_help="The therapist's dashboard: live sessions, videos, history.")
def app_command(
    port: int = typer.Option(8501, metavar="PORT", help="Port to listen on."),
    host: str = typer.Option("127.0.0.1", metavar="ADDRESS",
                             help="Address to listen on; beyond localhost an account and TLS are required."),
    model: Optional[Path] = typer.Option(None, metavar="FILE",
                                         help="ONNX pose model (default: the embedded default model)."),
    data_dir: Optional[Path] = typer.Option(None, metavar="DIR", help="Folder of the session history and recordings "
                                                                      "(default: the per-user data folder; or "
                                                                      "REHAB_APP_DATA_DIR)."),
    certfile: Optional[Path] = typer.Option(None, metavar="FILE", help="TLS certificate chain (PEM): serve HTTPS."),
    keyfile: Optional[Path] = typer.Option(None, metavar="FILE", help="TLS private key (PEM) of --certfile."),
    insecure_http: bool = typer.Option(False, "--insecure-http",
                                       help="Allow plain HTTP beyond localhost (only behind a TLS reverse proxy)."),
) -> None:
    """Start the therapist's dashboard (live sessions, video analysis, history)."""
    from rehab.app.launch import LaunchError, launch

    try:
        code = launch(host, port, model_path=model, data_dir=data_dir, certfile=certfile, keyfile=keyfile,
                      insecure_http=insecure_http)
    except LaunchError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


users = typer.Typer(help="Dashboard accounts (the users file; see README 'Accounts').", no_args_is_help=True,
                    rich_markup_mode=None)
app.add_typer(users, name="users")


def _users_file(users_file: Optional[Path]) -> Path:
    from rehab.app_settings import AppSettings

    if users_file is not None:
        return users_file
    try:
        return AppSettings.load().users_path
    except (ValueError, FileNotFoundError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None


_USERS_FILE_OPTION = typer.Option(None, "--users-file", help="Users file (default: users.json in the data folder, "
                                                              "or REHAB_APP_USERS_FILE).")


@users.command("add", cls=Command)
def users_add(
    name: str = typer.Argument(..., help="Account name (letters, digits, . _ -)."),
    users_file: Optional[Path] = _USERS_FILE_OPTION,
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from standard input."),
) -> None:
    """Add an account, or set a new password for an existing one."""
    import sys

    from rehab.accounts import AuthError, add_user

    path = _users_file(users_file)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt(f"Password for {name}", hide_input=True, confirmation_prompt=True)
    try:
        new = add_user(path, name, password)
    except AuthError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{'added' if new else 'changed the password of'} {name} in {path}")


@users.command("remove", cls=Command)
def users_remove(name: str = typer.Argument(..., help="Account name."),
                 users_file: Optional[Path] = _USERS_FILE_OPTION) -> None:
    """Remove an account (its past entries stay in the audit trail)."""
    from rehab.accounts import AuthError, remove_user

    path = _users_file(users_file)
    try:
        remove_user(path, name)
    except AuthError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"removed {name} from {path}")


@users.command("list", cls=Command)
def users_list(users_file: Optional[Path] = _USERS_FILE_OPTION) -> None:
    """List the accounts (names and dates only)."""
    from rehab.accounts import AuthError, read_users

    path = _users_file(users_file)
    try:
        accounts = read_users(path)
    except AuthError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    if not accounts:
        typer.echo(f"no accounts in {path}")
    for account, entry in sorted(accounts.items()):
        typer.echo(f"{account}\tadded {entry.get('created_at', '?')}")


@app.command(cls=Command, short_help="PCK and joint-angle errors of a model on an annotated dataset.")
def evaluate(
    dataset: str = typer.Option("lsp", metavar="NAME", help="Annotation layout: lsp (images/ + joints.mat)."),
    root: Path = typer.Option(..., metavar="DIR", help="Dataset folder, e.g. ../shared/data/lsp."),
    split: str = typer.Option("test", metavar="SPLIT", help="train (im0001-im1000), test (im1001-im2000) or all."),
    model: Optional[Path] = typer.Option(None, metavar="FILE",
                                         help="ONNX pose model (default: the embedded default model)."),
    limit: Optional[int] = typer.Option(None, min=1, metavar="N", help="Evaluate only the first N images of the split."),
    images: Optional[str] = typer.Option(None, "--images", metavar="A-B",
                                         help="Only the images numbered A-B in the split, e.g. 801-1000 "
                                              "(im0801-im1000: the LSP train images held out for validation)."),
    flip_test: Optional[bool] = typer.Option(None, "--flip/--no-flip", help="Flip test (default: the model's)."),
    threads: Optional[int] = typer.Option(None, min=1, metavar="N", help="ONNX Runtime intra-op threads."),
    json_out: Optional[Path] = typer.Option(None, "--json", metavar="FILE", help="Write the full report as JSON here."),
) -> None:
    """PCK@0.2 (12 limb joints), PCKh@0.5 and joint-angle errors of a model on an annotated dataset."""
    from rehab.pose_annotations import read_lsp
    from rehab.accuracy import evaluate_pose_model, format_report, select_numbered
    from rehab.core.files import write_json
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


app.command("process", cls=Command,
            short_help="Process recorded sessions: annotated video, tables, report.")(batch_cli.process_command)
app.command("exercises", cls=Command,
            short_help="The exercises repetitions are counted for, in words.")(batch_cli.exercises_command)


def main() -> None:
    app()

"""`rehab process` and `rehab exercises`: parse options, call rehab.batch, print the final table.

Plain functions with Typer annotations, mounted on the one CLI in rehab/cli.py:

    app.command("process")(batch_cli.process_command)
    app.command("exercises")(batch_cli.exercises_command)

Heavy imports (pipeline, ONNX Runtime, OpenCV) happen inside the commands, so `rehab train` stays light; the
exercise table (pure data) is imported here, for --exercise's help.
Exit codes: 0 every video done or already complete, 1 some videos failed (the table says which and why),
2 nothing could run (bad option, no videos, output folder not writable, model missing, Ray cluster unusable),
130 interrupted (Ctrl-C): finished videos are kept and the same command finishes the rest.

Two engines run the same per-video function: ``--engine local`` (default: worker processes on this machine)
and ``--engine ray`` (one Ray task per video, on a local Ray instance or the cluster at ``--address``; needs
the [cluster] extra).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from rehab.analysis.exercises import EXERCISES

logger = logging.getLogger(__name__)

EXIT_SOME_FAILED = 1
EXIT_CANNOT_RUN = 2
EXIT_INTERRUPTED = 130  # the shell's code for a command stopped by SIGINT
ENGINES = ("local", "ray")
STATUS_LABELS = {"done": "done", "skipped": "skipped (complete)", "failed": "FAILED"}


def process_command(
    paths: Annotated[list[Path], typer.Argument(help="Video files and/or folders (searched recursively).",
                                                metavar="PATH", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR", help="Output folder: one sub-folder per video.")],
    exercise: Annotated[str | None, typer.Option(
        "--exercise", "-e", metavar="NAME",
        help=f"Count repetitions of this exercise: {', '.join(EXERCISES)} (`rehab exercises` describes them).")] = None,
    workers: Annotated[int, typer.Option(
        "--workers", "-w", min=1, metavar="N",
        help="Videos processed in parallel (at most the usable CPU cores).")] = 1,
    model: Annotated[Path | None, typer.Option(
        "--model", "-m", metavar="FILE", help="ONNX pose model (default: the embedded default model).")] = None,
    settings: Annotated[Path | None, typer.Option(
        "--settings", metavar="FILE",
        help="YAML file of runtime settings (smoothing, scores, roi, anonymize, draw).")] = None,
    max_seconds: Annotated[float | None, typer.Option(
        "--max-seconds", metavar="SECONDS", help="Process only the first SECONDS of each video.")] = None,
    stride: Annotated[int, typer.Option("--stride", min=1, metavar="N", help="Process every N-th frame.")] = 1,
    max_side: Annotated[int | None, typer.Option(
        "--max-side", metavar="PIXELS", help="Downscale frames whose longer side exceeds PIXELS.")] = None,
    pdf: Annotated[bool, typer.Option("--pdf/--no-pdf", help="Also write report.pdf.")] = True,
    force: Annotated[bool, typer.Option("--force", help="Redo videos whose outputs are already complete.")] = False,
    allow_truncated: Annotated[bool, typer.Option(
        "--allow-truncated", help="Process the readable part of truncated files instead of failing them.")] = False,
    progress: Annotated[bool | None, typer.Option(
        "--progress/--no-progress", help="Progress bars (default: when the terminal shows them).",
        show_default=False)] = None,
    engine: Annotated[str, typer.Option(
        "--engine", metavar="local|ray", help="Where videos run: local (worker processes here) or ray (one Ray task per video; "
        "needs the [cluster] extra).")] = "local",
    address: Annotated[str | None, typer.Option(
        "--address", metavar="ADDRESS", help="Ray cluster for --engine ray: auto, HOST:PORT or ray://HOST:10001 (default: start a "
        "local Ray instance).", show_default=False)] = None,
    cpus_per_video: Annotated[int | None, typer.Option(
        "--cpus-per-video", min=1, metavar="N", help="CPUs Ray reserves for each video, and its threads (--engine ray; "
        "default 1).", show_default=False)] = None,
) -> None:
    """Process recorded sessions: annotated video, frames table, summary and report for each video."""
    from rehab.batch import BatchError, BatchOptions, run_batch
    from rehab.settings import RuntimeSettings

    try:
        check_engine_options(engine, workers, address, cpus_per_video)
        runtime_settings = RuntimeSettings.from_yaml(settings) if settings is not None else RuntimeSettings()
        options = BatchOptions(exercise=exercise, settings=runtime_settings, max_seconds=max_seconds, stride=stride,
                               max_side_px=max_side, pdf=pdf, allow_truncated=allow_truncated, workers=workers,
                               force=force, progress=progress)
        if engine == "ray":
            from rehab.batch_ray import DEFAULT_CPUS_PER_VIDEO, run_batch_ray

            result = run_batch_ray(paths, out, options, model_path=model, address=address,
                                   cpus_per_video=cpus_per_video or DEFAULT_CPUS_PER_VIDEO)
        else:
            result = run_batch(paths, out, options, model_path=model)
    except (BatchError, ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_CANNOT_RUN) from None
    except KeyboardInterrupt:
        typer.echo("interrupted: finished videos are kept; run the same command again to finish the rest", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    typer.echo(format_table(result))
    if not result.ok:
        raise typer.Exit(EXIT_SOME_FAILED)


def check_engine_options(engine: str, workers: int, address: str | None, cpus_per_video: int | None) -> None:
    """ValueError for options that do not fit the engine (they would otherwise be silently ignored)."""
    if engine not in ENGINES:
        raise ValueError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "local" and (address is not None or cpus_per_video is not None):
        raise ValueError("--address and --cpus-per-video are options of --engine ray")
    if engine == "ray" and workers != 1:
        raise ValueError("--workers is for --engine local; on Ray, the cluster's CPUs divided by --cpus-per-video "
                         "set how many videos run at once")


def format_table(batch) -> str:
    """The final table: one line per video (status, frames, repetitions, seconds, reason), then the totals."""
    rows = [("video", "status", "frames", "with pose", "reps", "seconds", "output / reason")]
    for r in batch.results:
        detail = r.message if r.status == "failed" else (r.output_dir + (f"  ({r.message})" if r.message else ""))
        counted = r.status == "done"
        status = STATUS_LABELS[r.status] + (f" ({r.truncated})" if r.truncated else "")
        rows.append((r.name, status, str(r.frames) if counted else "-",
                     str(r.frames_with_pose) if counted else "-", str(r.repetitions) if counted else "-",
                     f"{r.elapsed_s:.1f}" if counted else "-", detail))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths)) + "  " + row[-1] for row in rows]
    done, skipped, failed = (len(batch.with_status(s)) for s in ("done", "skipped", "failed"))
    lines.append(f"{done} done, {skipped} already complete, {failed} failed in {batch.elapsed_s:.1f} s "
                 f"with {batch.workers} worker{'s' if batch.workers != 1 else ''}: {batch.videos_per_minute:.2f} videos/min, "
                 f"{batch.frames_per_second:.1f} frames/s")
    return "\n".join(lines)


def exercises_command() -> None:
    """List the exercises that repetitions can be counted for: what the patient does, the angles measured
    and when a repetition counts."""
    from rehab.analysis.exercises import describe_repetition
    from rehab.core.angles import get_angle

    for ex in EXERCISES.values():
        counted = "both sides together" if ex.bilateral else "each side on its own"
        typer.echo(f"{ex.name}: {ex.title}")
        if ex.description:
            typer.echo(f"    {ex.description}")
        typer.echo(f"    angles: {', '.join(ex.angles)} ({counted}; {get_angle(ex.angles[0]).description})")
        typer.echo(f"    counted: {describe_repetition(ex)}")

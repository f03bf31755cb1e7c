"""Command line: ``python -m train fit|finetune|evaluate|plots|study`` (mounted as ``rehab train ...``).

Each command parses its options, builds a config and calls one library function.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from rehab.cli_help import Command
from train.config import ConfigError, apply_overrides, load_config

app = typer.Typer(help="Train, fine-tune, evaluate and plot the pose network.", no_args_is_help=True,
                  add_completion=False, rich_markup_mode=None)
logger = logging.getLogger(__name__)

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config file (train/configs/*.yaml)")
SetOpt = typer.Option(None, "--set", "-s", help="override a config value: section.key=value (repeatable)")


@app.callback()
def _group() -> None:
    """Train, fine-tune, evaluate and plot the pose network (see train/configs/ for the paper's runs)."""


def _logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(code=2)


@app.command(cls=Command)
def fit(
    config: Optional[Path] = ConfigOpt,
    set_: Optional[list[str]] = SetOpt,
    run_dir: Path = typer.Option(..., "--run-dir", help="output folder: log.csv, last.pt, best.pt, config.yaml"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in --run-dir from its last.pt"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Train a model. Multi-GPU / multi-node: launch this command under torchrun."""
    from train.engine import fit as run_fit
    from train.engine import load_resume_checkpoint

    _logging(verbose)
    try:
        if resume:
            if config is not None:
                raise ConfigError("--resume continues with the config saved in last.pt; pass changes with --set")
            _, cfg = load_resume_checkpoint(run_dir)
            cfg = apply_overrides(cfg, set_ or [])
        else:
            cfg = load_config(config, set_ or [])
        result = run_fit(cfg, run_dir, resume=resume)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        _fail(exc)
        return
    typer.echo(f"done: {result.epochs_done} epochs, best {result.best_metric_name} {result.best_metric:.4g}, "
               f"checkpoints in {result.run_dir}")


@app.command(cls=Command)
def finetune(
    config: Optional[Path] = ConfigOpt,
    set_: Optional[list[str]] = SetOpt,
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="source model (overrides finetune.checkpoint)"),
    run_dir: Path = typer.Option(..., "--run-dir", help="output folder; finetune.json holds the before/after table"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Fine-tune a trained model on a target dataset; report source and target PCK before and after."""
    from train.finetune import finetune as run_finetune

    _logging(verbose)
    try:
        cfg = load_config(config, set_ or [])
        if checkpoint is not None:
            cfg.finetune.checkpoint = str(checkpoint)
        result = run_finetune(cfg, run_dir)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        _fail(exc)
        return
    typer.echo(f"fine-tuned; before/after table in {result.summary_path}")


@app.command(cls=Command)
def evaluate(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="a best.pt / last.pt"),
    data: Optional[list[str]] = typer.Option(
        None, "--data", "-d", help="kind:split[:limit][:crop], e.g. lsp:test:full_image or mpii:valid "
        "(repeatable; default: the checkpoint config's data.val)"),
    set_: Optional[list[str]] = SetOpt,
    flip: bool = typer.Option(False, "--flip/--no-flip", help="flip test (average with the mirrored image)"),
    out: Path = typer.Option(Path("eval.json"), "--out", "-o", help="JSON output"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """PCK@0.2 (torso) and PCKh@0.5 per joint and mean, and knee/elbow/hip/shoulder angle errors, as JSON."""
    import torch

    from rehab.core.files import write_json
    from train.config import resolve
    from train.engine import select_device
    from train.predict import evaluate_model, parse_source
    from train.model import load_checkpoint

    _logging(verbose)
    try:
        model, cfg, ckpt = load_checkpoint(checkpoint)
        cfg = resolve(apply_overrides(cfg, set_ or []))
        sources = [parse_source(s) for s in data] if data else cfg.data.val
        if not sources:
            raise ValueError("nothing to evaluate: pass --data or give the config a data.val")
        device = select_device(cfg.train.device)
        if device.type == "cpu":
            torch.set_num_threads(cfg.train.threads)
        reports = evaluate_model(model.to(device), cfg, sources, flip_test=flip, device=device,
                                 progress=cfg.train.progress)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        _fail(exc)
        return
    write_json({"checkpoint": str(checkpoint), "epoch": int(ckpt.get("epoch", -1)) + 1,
                "reports": [r.to_dict() for r in reports]}, out)
    for r in reports:
        typer.echo(f"{r.dataset}: PCK@{cfg.eval.pck_alpha} {r.pck['mean']:.2f}  PCKh@{cfg.eval.pckh_alpha} "
                   f"{r.pckh['mean']:.2f}  ({r.images})")
    typer.echo(f"wrote {out}")


@app.command(cls=Command)
def plots(
    run: Optional[list[Path]] = typer.Option(None, "--run", help="run folder with log.csv: per-joint PCK over epochs"),
    data: Optional[list[str]] = typer.Option(None, "--data", "-d", help="kind:split for keypoint spread and "
                                             "missing joints, e.g. mpii:train lsp:all"),
    compare: Optional[list[Path]] = typer.Option(None, "--compare", help="evaluate JSON files to compare as bars"),
    metric: str = typer.Option("pckh", "--metric", help="pckh or pck for --compare"),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="shared data folder (default: "
                                             "$REHAB_SHARED_DIR or <repo>/../shared)"),
    out: Path = typer.Option(Path("plots"), "--out", "-o", help="output folder for the PNG files"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Figures: per-joint PCK over epochs, keypoint spread, missing joints per dataset, runs compared."""
    from train import plots as P
    from train.config import Config, resolve
    from train.dataset import read_source
    from train.predict import parse_source

    _logging(verbose)
    if not (run or data or compare):
        _fail(ValueError("nothing to plot: give --run, --data and/or --compare"))
    if metric not in ("pck", "pckh"):
        _fail(ValueError(f"--metric must be pck or pckh, got {metric!r}"))
    written = []
    try:
        for r in run or []:
            written.append(P.plot_pck_over_epochs(r / "log.csv", out / f"pck_epochs_{r.name}.png"))
        if data:
            cfg = Config()
            if data_root is not None:
                cfg.data.root = str(data_root)
            cfg = resolve(cfg)
            datasets = {spec: read_source(cfg, parse_source(spec)) for spec in data}
            written.append(P.plot_keypoint_spread(datasets, out / "keypoint_spread.png"))
            written.append(P.plot_missing_joints(datasets, out / "missing_joints.png"))
        if compare:
            written.append(P.plot_compare_runs(list(compare), out / f"compare_{metric}.png", metric=metric))
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        _fail(exc)
        return
    for path in written:
        typer.echo(f"wrote {path}")


@app.command(cls=Command)
def study(
    kind: str = typer.Argument(..., help="augmentation | mixed | finetune | ablation"),
    source: Optional[str] = typer.Option(None, "--source", help="source domain: auto (mpii when its images exist, "
                                         "else lspet) | mpii | lspet | lsp"),
    target: Optional[str] = typer.Option(None, "--target", help="target domain (default lsp)"),
    budget: Optional[int] = typer.Option(None, "--budget", help="training images seen per arm"),
    preset: str = typer.Option("cpu", "--preset", help="cpu (MobileNetV2 128x128) | paper (ResNet-50 256x256, GPU)"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="study YAML (default: "
                                          "train/configs/studies/<study>[_paper].yaml)"),
    set_: Optional[list[str]] = typer.Option(None, "--set", "-s", help="study key=value, or a training-config key "
                                             "(model.*, train.*, ...) for every arm (repeatable)"),
    out: Path = typer.Option(..., "--out", help="work folder: study.json and arms/<arm>/ runs (checkpoints)"),
    report_dir: Optional[Path] = typer.Option(None, "--report-dir", help="report folder (default <out>/report)"),
    reuse: Optional[list[str]] = typer.Option(None, "--reuse", help="ARM=RUN_DIR: an identical finished run stands in "
                                              "for the arm (config digest checked; repeatable)"),
    base_checkpoint: Optional[Path] = typer.Option(None, "--base-checkpoint", help="finetune: start from this model "
                                                   "instead of training the base arm"),
    report_only: bool = typer.Option(False, "--report-only", help="rebuild the report from the arms' predictions"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run one of the paper's studies or the recipe ablations (arms resume when interrupted); write the report."""
    from train.studies import parse_reuse, run_study, study_config_from_cli

    _logging(verbose)
    try:
        cfg = study_config_from_cli(kind, preset, config, set_ or [], source, target, budget, base_checkpoint)
        result = run_study(cfg, out, report_dir, parse_reuse(reuse or []), report_only=report_only)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        _fail(exc)
        return
    typer.echo(f"{kind} study: {len(result.run_ids)} arms; report in {result.report_md}")


@app.command("study-summary", cls=Command)
def study_summary(
    folder: Path = typer.Argument(..., help="a folder of ablation report folders, e.g. docs/ablations"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="markdown file (default <folder>/SUMMARY.md)"),
) -> None:
    """One table over the ablation reports in FOLDER/*/report.json: every arm against the baseline."""
    from train.studies.report import ablation_summary

    try:
        text = ablation_summary([p for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else [])
    except FileNotFoundError as exc:
        _fail(exc)
        return
    target = out or folder / "SUMMARY.md"
    target.write_text(text)
    typer.echo(f"wrote {target}")


@app.command("mine-negatives", cls=Command)
def mine_negatives(
    mined: Path = typer.Argument(..., help="mined-negatives JSON: written by the miner, read by --write-strips/--clear"),
    model: Optional[Path] = typer.Option(None, "--model", help="ONNX model whose search-and-track loop is replayed "
                                         "(default: the shipped one)"),
    dataset: str = typer.Option("lspet", "--dataset", help="lspet | lsp (the training split of LSP)"),
    start: Optional[int] = typer.Option(None, "--start", help="first image of the dataset (a Python slice)"),
    stop: Optional[int] = typer.Option(None, "--stop", help="image to stop before, e.g. -500 to keep LSPET's "
                                       "held-out last 500 out"),
    write_strips: Optional[Path] = typer.Option(None, "--write-strips", help="write the strips of MINED as PNGs "
                                                "and list.json (the person oracle's input) into this folder"),
    clear: Optional[Path] = typer.Option(None, "--clear", help="the oracle's JSON for those strips: keep the "
                                         "strips it found nobody in"),
    output: Optional[Path] = typer.Option(None, "--output", help="with --clear: where the cleared file goes"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Replay the runtime's search-and-track loop on person-free strips of photos; keep where it finds somebody."""
    from train import hard_negatives as hn
    from train.config import default_shared_dir

    _logging(verbose)
    try:
        if write_strips is not None:
            _, strips = hn.load(mined)
            listing = hn.write_strips(strips, write_strips, default_shared_dir())
            typer.echo(f"wrote {listing} ({len(strips)} strips)")
            return
        if clear is not None:
            if output is None:
                raise ValueError("--clear needs --output (the cleared file)")
            about, strips = hn.load(mined)
            cleared, dropped = hn.keep_cleared(strips, clear)
            kept, faces = hn.drop_with_faces(cleared, default_shared_dir())
            hn.save(output, kept, {**about, "oracle": clear.name, "oracle_found_person": dropped,
                                   "face_found": faces})
            typer.echo(f"kept {len(kept)} strips: {dropped} had a person by the pose oracle, {faces} more a face "
                       f"(CenterFace >= {hn.FACE_THRESHOLD}): {output}")
            return
        from rehab.pose_annotations import read_lsp, read_lspet
        from rehab.runtime.model import PoseModel
        from rehab.settings import RuntimeSettings
        from train.config import REPO_ROOT as REPO

        readers = {"lspet": lambda: read_lspet(default_shared_dir() / "data" / "lspet"),
                   "lsp": lambda: read_lsp(default_shared_dir() / "data" / "lsp", "train")}
        if dataset not in readers:
            raise ValueError(f"--dataset must be one of {sorted(readers)}, got {dataset!r}")
        records = readers[dataset]()[start:stop]
        pose_model = PoseModel.load(model, threads=2)
        if not pose_model.info.has_presence:
            raise ValueError(f"{pose_model.path} has no presence output: there is no loop to replay")
        hard, searched = hn.mine(records, pose_model, RuntimeSettings())
        hn.relative_images(hard, default_shared_dir())
        model_name = pose_model.path.resolve()
        model_name = model_name.relative_to(REPO) if model_name.is_relative_to(REPO) else model_name
        hn.save(mined, hard, {"model": str(model_name), "dataset": dataset, "start": start, "stop": stop,
                              "images": len(records), "strips_searched": searched})
        typer.echo(f"{len(hard)} hard strips of {searched} searched in {len(records)} images: {mined}")
    except (FileNotFoundError, ValueError) as exc:
        _fail(exc)

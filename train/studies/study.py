"""One study end to end: plan the arms, train and evaluate them (resumable), write the report."""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from rehab.core.files import write_json
from train.config import ConfigError, resolve
from train.studies.config import (
    ArmPlan,
    Domains,
    StudyConfig,
    base_train_config,
    baseline_name,
    domain_label,
    load_study_config,
    plan_arms,
    preset_path,
    resolve_domains,
    study_root,
    validate,
)
from train.studies.report import STUDY_JSON, write_report

logger = logging.getLogger(__name__)

TITLES = {
    "augmentation": "Augmentation level (paper Tables 1-2)",
    "mixed": "Mixed-domain training (paper Table 3)",
    "finetune": "Fine-tuning learning-rate sweep against catastrophic forgetting (paper Tables 4-5)",
    "ablation": "One-factor ablations of the training recipe (issue 16), on validation held out of training data",
}


@dataclass(frozen=True)
class StudyResult:
    out_dir: Path
    report_dir: Path
    report_md: Path
    run_ids: tuple[str, ...]


def _plan_dict(p: ArmPlan) -> dict:
    return {"name": p.name, "run_id": p.run_id, "seed": p.seed, "description": p.description,
            "init_from": p.init_from, "evaluate_from": p.evaluate_from}


def _notes(domains: Domains, cfg: StudyConfig) -> list[str]:
    notes = []
    if domains.source == "lspet":
        notes += [("The MPII images are not available here, so LSPET stands in for MPII as the source domain "
                   "(the paper trains on MPII and tests on LSP)."),
                  (f"LSPET has no test split: its last {cfg.source_holdout} images are the source test set and no "
                   "arm trains on them. LSPET joints that were not annotated (about 12%) are not scored."),
                  "LSPET and LSP have no head boxes: PCKh uses the neck-head_top segment as the head size."]
    if cfg.kind == "ablation":
        notes += [(f"Validation only: the 'source' column is LSPET's last {cfg.source_holdout} images and the "
                   f"'target' column LSP train's last {cfg.target_holdout} images (im{1001 - cfg.target_holdout:04d}-"
                   "im1000); every arm trains on the rest of both sets and none on these. LSP test (im1001-im2000) "
                   "is read by no arm, neither for training, the per-epoch curve nor these scores."),
                  ("A difference between two arms here is a difference between two trained models at this small "
                   "budget and one seed; a factor that helps early may not help after a long run (and vice versa).")]
    elif domains.target == "lsp":
        notes.append("The LSP test images (im1001-im2000) are never trained on by any arm; the mixed and "
                     "fine-tuning arms use LSP train (im0001-im1000) only.")
    crop = ("the annotated joints' box with a margin, like the training crops" if cfg.eval_crop == "person"
            else "the whole image letterboxed")
    notes.append(f"Evaluation crop: {cfg.eval_crop} ({crop}); flip test {'on' if cfg.flip_test else 'off'}.")
    return notes


def _model_description(train) -> str:
    m, o, t = train.model, train.optim, train.train
    init = {"file": "ImageNet weights from a local file", "imagenet": "ImageNet weights",
            "random": "random init"}[m.backbone_init]
    schedule = (f"x{o.lr_factor:g} at epochs {o.scaled_milestones} of {t.epochs}" if o.scaled_milestones
                else "constant")
    if o.lr_schedule == "cosine":
        schedule = f"cosine over {t.epochs} epochs"
    precision = "bf16 autocast on CPU" if t.cpu_bf16 else "fp32"
    return (f"{m.backbone} ({init}) + {m.deconv_layers}x{m.deconv_filters} deconvolution head, "
            f"{m.input_size[0]}x{m.input_size[1]} input, {m.heatmap_size[0]}x{m.heatmap_size[1]} heatmaps, "
            f"{m.joint_set}; Adam lr {o.lr:g} ({schedule}), batch {t.batch_size}, {precision}")


def _budget(cfg: StudyConfig, plans: list[ArmPlan]) -> dict:
    fit_plan = next((p for p in plans if not p.init_from and not p.checkpoint), None)
    ft_plan = next((p for p in plans if p.init_from), None)
    text = []
    out: dict = {"images_per_arm": cfg.budget_images, "epochs": cfg.epochs}
    if fit_plan is not None:
        t = fit_plan.train
        seen = t.train.epochs * (t.data.epoch_size // t.train.batch_size) * t.train.batch_size
        out["images_seen_per_arm"] = seen
        text.append(f"{seen} training images per arm ({t.train.epochs} epochs of {t.data.epoch_size})")
    if ft_plan is not None:
        t = ft_plan.train
        seen = t.train.epochs * (t.data.epoch_size // t.train.batch_size) * t.train.batch_size
        out.update({"finetune_images_per_arm": seen, "finetune_epochs": t.train.epochs})
        text.append(f"{seen} fine-tuning images per fine-tuning arm ({t.train.epochs} epochs of "
                    f"{t.data.epoch_size}) on top of the base model")
    out["description"] = "; ".join(text)
    return out


def write_study_meta(cfg: StudyConfig, domains: Domains, plans: list[ArmPlan], out_dir: Path) -> None:
    from train.dataset import read_source

    # The first trained arm describes the model and its LR schedule (the base config has no budget yet).
    described = next((p for p in plans if not p.checkpoint), plans[0])
    train = resolve(described.train)
    entries = {role: [r.entry for r in read_source(train, src)]
               for role, src in (("source", domains.source_test), ("target", domains.target_test),
                                 ("source_train", domains.source_train), ("target_train", domains.target_train))}
    sizes = {role: len(e) for role, e in entries.items()}
    baseline = baseline_name(cfg)
    meta = {
        "kind": cfg.kind,
        "title": f"{TITLES[cfg.kind]}: {domains.source.upper()} -> {domains.target.upper()}",
        "study": dataclasses.asdict(cfg),
        "domains": {role: {"name": name, "train": domain_label(train_src, entries[f"{role}_train"]),
                           "train_images": sizes[f"{role}_train"],
                           "test": domain_label(test_src, entries[role]), "num_images": sizes[role]}
                    for role, name, train_src, test_src in (
                        ("source", domains.source, domains.source_train, domains.source_test),
                        ("target", domains.target, domains.target_train, domains.target_test))},
        "budget": _budget(cfg, plans),
        "model": {"description": _model_description(train), "backbone": train.model.backbone,
                  "input_size": train.model.input_size, "joint_set": train.model.joint_set},
        "alphas": {"pck": train.eval.pck_alpha, "pckh": train.eval.pckh_alpha},
        "baseline": baseline,
        "baseline_run_ids": {str(p.seed): p.run_id for p in plans if p.name == baseline},
        "arms": [_plan_dict(p) for p in plans],
        "notes": _notes(domains, cfg),
    }
    write_json(meta, out_dir / STUDY_JSON)


def run_study(cfg: StudyConfig, out_dir: str | os.PathLike[str], report_dir: str | os.PathLike[str] | None = None,
              reuse: dict[str, Path] | None = None, report_only: bool = False) -> StudyResult:
    """Run (or resume) every arm of ``cfg`` in ``out_dir``/arms and write the report.

    ``reuse`` maps an arm's run_id to a finished, identical run elsewhere (checked by config digest), e.g. the
    mixed study's source-only arm is the augmentation study's strong arm. ``report_only`` rebuilds the report
    from the arms' saved predictions without training or evaluating.
    """
    validate(cfg)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Every rank would run and write every arm; a multi-GPU arm is a `train fit` under torchrun.
        raise ValueError("run a study as a single process (not under torchrun); it trains its arms one after "
                         "another on one device")
    out_dir = Path(out_dir)
    domains = resolve_domains(cfg, study_root(cfg))
    plans = plan_arms(cfg, domains)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not report_only:
        from train.studies.runner import run_arms  # torch only when arms run

        write_study_meta(cfg, domains, plans, out_dir)
        train = resolve(base_train_config(cfg, domains))
        run_arms(plans, out_dir, domains.test_sets(), reuse or {}, progress=train.train.progress)
    elif not (out_dir / STUDY_JSON).is_file():
        raise FileNotFoundError(f"--report-only: {out_dir / STUDY_JSON} not found; run the study first")
    report_dir = Path(report_dir) if report_dir is not None else out_dir / "report"
    md = write_report(out_dir, report_dir)
    return StudyResult(out_dir, report_dir, md, tuple(p.run_id for p in plans))


def parse_reuse(items: list[str]) -> dict[str, Path]:
    """``ARM=RUN_DIR`` items -> {arm run_id: run dir}."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--reuse {item!r} must look like ARM=RUN_DIR (e.g. source=runs/aug/arms/strong)")
        arm, path = item.split("=", 1)
        out[arm.strip()] = Path(path.strip())
    return out


def study_config_from_cli(kind: str, preset: str = "cpu", config: str | os.PathLike[str] | None = None,
                          overrides: list[str] | tuple[str, ...] = (), source: str | None = None,
                          target: str | None = None, budget: int | None = None,
                          base_checkpoint: str | os.PathLike[str] | None = None) -> StudyConfig:
    """The study config the ``study`` command means: the preset's YAML (or ``config``), then overrides, then
    the explicit options."""
    cfg = load_study_config(config if config is not None else preset_path(kind, preset), overrides)
    if cfg.kind != kind:
        raise ConfigError(f"the study config is for the {cfg.kind!r} study, not {kind!r}")
    if source is not None:
        cfg.source = source
    if target is not None:
        cfg.target = target
    if budget is not None:
        cfg.budget_images = budget
    if base_checkpoint is not None:
        if kind != "finetune":
            raise ConfigError("--base-checkpoint applies to the finetune study only")
        cfg.base_checkpoint = str(base_checkpoint)
    validate(cfg)
    return cfg

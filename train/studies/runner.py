"""Running a study's arms: ordinary train runs in <out>/arms/<run_id>/, then one evaluation per arm.

Each arm folder is a normal run folder of the shared engine (config.yaml, log.csv, last.pt, best.pt) plus
arm.json (what ran, a digest of its resolved config, training time) and predictions_<role>.npz (the
predictions on the source and target test sets, from which the report computes every number).

Resume: an arm whose arm.json matches its config digest and test sets is skipped; an arm with a last.pt of
the same config continues from it (the engine's resume); anything else starts afresh. A last.pt written
under a different config is never silently continued: the arm stops with a message naming the folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from rehab.accuracy import Predictions
from rehab.core.files import write_json
from train.config import Config, SourceConfig, apply_overrides, config_from_saved, resolve, to_dict
from train.dataset import build_source_dataset
from train.engine import CONFIG_YAML, LAST, LOG_CSV, fit, select_device
from train.predict import predict
from train.model import load_checkpoint
from train.studies.config import ArmPlan

logger = logging.getLogger(__name__)

ARM_JSON = "arm.json"
PREDICTIONS_NPZ = "predictions_{role}.npz"
# Settings that change neither what an arm learns nor how it is scored (machine, paths, logging).
_DIGEST_EXCLUDED = {
    "data": ("root", "num_workers", "image_cache"),
    "train": ("progress", "tensorboard", "threads", "device"),
    "finetune": ("checkpoint",),
}

# Options added after runs existed, with the value that means "the behaviour from before the option": a config at
# that value leaves them out of its digest, so adding an option never turns a finished or half-done arm (whose
# saved config lacks the key) into a "different config". Every new option of the training config belongs here.
_DIGEST_OMITTED_AT_DEFAULT: dict[str, dict[str, object]] = {
    "model": {"heatmap_encoding": "standard", "heatmap_decoding": "quarter", "presence_head": False,
              "presence_pool": "avg_max", "presence_hidden": 64, "presence_input": "backbone", "presence_conv": 0,
              "presence_tower_blocks": 0},
    "optim": {"lr_schedule": "multistep", "presence_head_lr": None},
    "train": {"presence_loss_weight": 1.0, "freeze_pose": False},
    "data": {"presence_val": []},
    "augment": {"half_body_prob": 0.0, "occluder_prob": 0.0, "occluder_max": 0, "color_prob": 0.0, "blur_prob": 0.0,
                "noise_prob": 0.0, "jpeg_prob": 0.0, "flare_prob": 0.0},
}
# The same for the keys of every data source (data.train, data.val and the like).
_SOURCE_OMITTED_AT_DEFAULT: dict[str, object] = {"sample": "person", "heatmap_loss": True, "zoom_out": [],
                                                 "person_box_xyxy": [], "exclude_boxes_xyxy": [], "frame_step": 2}


class ArmConfigMismatch(ValueError):
    """An arm folder holds a run of a different config than the study asks for."""


@dataclass(frozen=True)
class ArmOutcome:
    plan: ArmPlan
    arm_dir: Path
    checkpoint: Path
    digest: str
    trained_now: bool


def _digest(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def config_digest(cfg: Config, init_digest: str = "") -> str:
    """Digest of a resolved training config without machine-specific settings; ``init_digest`` names the
    model a fine-tuning run starts from."""
    data = to_dict(resolve(cfg))
    for section, keys in _DIGEST_EXCLUDED.items():
        for key in keys:
            data[section].pop(key, None)
    for section, defaults in _DIGEST_OMITTED_AT_DEFAULT.items():
        for key, value in defaults.items():
            if key in data[section] and data[section][key] == value:
                del data[section][key]
    for sources in data["data"].values():
        for source in sources if isinstance(sources, list) else ():
            for key, value in _SOURCE_OMITTED_AT_DEFAULT.items():
                if isinstance(source, dict) and key in source and source[key] == value:
                    del source[key]
    return _digest({"config": data, "init": init_digest})


def eval_digest(test_sets: dict[str, SourceConfig], cfg: Config) -> str:
    """What the evaluation depends on: the test sets and the scoring settings."""
    return _digest({"sets": {k: dataclasses.asdict(v) for k, v in test_sets.items()},
                    "eval": dataclasses.asdict(cfg.eval)})


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        logger.warning("%s is damaged; the arm will be evaluated again", path)
        return None


def _saved_checkpoint(path: Path) -> tuple[Config, int]:
    """(config, epochs completed) of a training checkpoint."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - torch.load raises many types for damaged files
        raise ValueError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from None
    return config_from_saved(ckpt["config"]), int(ckpt["epoch"]) + 1


# ----------------------------------------------------------------------------------------------
# evaluation


def save_predictions(pred: Predictions, entries: list[str], path: Path) -> None:
    np.savez_compressed(path, keypoints_px=pred.keypoints_px, scores=pred.scores, gt_px=pred.gt_px,
                        annotated=pred.annotated, head_box_xyxy=pred.head_box_xyxy,
                        joint_names=np.array(pred.joint_names), entries=np.array(entries))


def evaluate_checkpoint(checkpoint: Path, test_sets: dict[str, SourceConfig], study_train: Config,
                        progress: bool = True,
                        decode_set: tuple[str, ...] = ()) -> dict[str, tuple[Predictions, list[str]]]:
    """Predictions of the model in ``checkpoint`` on each test set, with the images' entry names.

    Uses the checkpoint's model and precision settings (as ``train evaluate`` does) and the study's data
    root and evaluation settings, so a direct ``train evaluate`` of the same checkpoint scores the same.
    ``decode_set`` overrides how the checkpoint's heatmaps are decoded (evaluate-only ablation arms).
    """
    model, cfg, _ = load_checkpoint(checkpoint)
    if decode_set:
        cfg = apply_overrides(cfg, list(decode_set))
    cfg.data.root = study_train.data.root
    cfg.data.num_workers = study_train.data.num_workers
    cfg.eval = dataclasses.replace(study_train.eval)
    cfg = resolve(cfg)
    device = select_device(study_train.train.device)
    if device.type == "cpu":
        torch.set_num_threads(study_train.train.threads)
    model = model.to(device)
    out = {}
    for role, src in test_sets.items():
        ds = build_source_dataset(cfg, src, train=False)
        loader = DataLoader(ds, batch_size=cfg.eval.batch_size, shuffle=False, num_workers=cfg.data.num_workers)
        pred = predict(model, loader, cfg.model, device, flip_test=cfg.eval.flip_test, cpu_bf16=cfg.train.cpu_bf16,
                       cuda_amp=cfg.train.amp, channels_last=cfg.train.channels_last, progress=progress,
                       desc=f"eval {role}")
        out[role] = (pred, [r.entry for r in ds.records])
    return out


# ----------------------------------------------------------------------------------------------
# training


def _training_info(arm_dir: Path, train: Config) -> dict:
    """Images seen and wall time from the engine's log.csv."""
    log = arm_dir / LOG_CSV
    seconds, rates = 0.0, []
    if log.is_file():
        import csv

        with log.open(newline="") as fh:
            for row in csv.DictReader(fh):
                seconds += float(row["epoch_seconds"] or 0.0)
                if row["images_per_s"]:
                    rates.append(float(row["images_per_s"]))
    steps = (train.data.epoch_size or 0) // train.train.batch_size
    return {"images_seen": train.train.epochs * steps * train.train.batch_size, "epochs": train.train.epochs,
            "epoch_size": train.data.epoch_size, "batch_size": train.train.batch_size,
            "train_seconds": round(seconds, 1),
            "images_per_s": round(train.train.epochs * steps * train.train.batch_size / seconds, 2) if seconds else None,
            "images_per_s_median_epoch": float(np.median(rates)) if rates else None}


def _train(train: Config, arm_dir: Path, digest: str, init_digest: str) -> None:
    """Train (or continue) the run in ``arm_dir`` up to ``train.train.epochs``."""
    last = arm_dir / LAST
    if last.is_file():
        saved, done = _saved_checkpoint(last)
        saved.data.root = train.data.root
        if config_digest(saved, init_digest) != digest:
            raise ArmConfigMismatch(f"{arm_dir} holds a run of a different config than this study's arm (budget, "
                                    "data or model changed); use another --out or delete that arm folder")
        if done >= train.train.epochs:
            logger.info("%s: training already complete (%d epochs)", arm_dir.name, done)
            return
        logger.info("%s: resuming after epoch %d of %d", arm_dir.name, done, train.train.epochs)
        fit(train, arm_dir, resume=True)
        return
    # A run interrupted before its first checkpoint may have left a log row; start clean.
    for name in (LOG_CSV, "best.pt", CONFIG_YAML):
        (arm_dir / name).unlink(missing_ok=True)
    fit(train, arm_dir)


def run_arm(plan: ArmPlan, arm_dir: Path, test_sets: dict[str, SourceConfig], init_checkpoint: Path | None = None, init_digest: str = "", reuse_dir: Path | None = None,
            progress: bool = True) -> ArmOutcome:
    """Train (unless done, given or reused) and evaluate one arm; returns where its model and results are."""
    arm_dir.mkdir(parents=True, exist_ok=True)
    train = config_from_saved(to_dict(plan.train))
    if init_checkpoint is not None:
        # Fine-tuning keeps the network of the model it starts from.
        base_cfg, _ = _saved_checkpoint(init_checkpoint)
        train.model = base_cfg.model
        train.finetune.checkpoint = str(init_checkpoint)
    train = resolve(train)
    if plan.checkpoint:
        checkpoint = Path(plan.checkpoint)
        if not checkpoint.is_file():
            raise FileNotFoundError(f"base checkpoint not found: {checkpoint} (base_checkpoint)")
        digest = "file:" + file_digest(checkpoint)
        if plan.decode_set:
            digest += ":decode:" + _digest(list(plan.decode_set))
    else:
        digest = config_digest(train, init_digest)
        checkpoint = arm_dir / LAST
    e_digest = eval_digest(test_sets, train)
    record = _read_json(arm_dir / ARM_JSON)
    predictions = {role: arm_dir / PREDICTIONS_NPZ.format(role=role) for role in test_sets}
    if (record and record.get("digest") == digest and record.get("eval_digest") == e_digest
            and all(p.is_file() for p in predictions.values())):
        logger.info("arm %s: done earlier, skipped", plan.run_id)
        return ArmOutcome(plan, arm_dir, Path(record["checkpoint"]), digest, trained_now=False)

    trained_now = False
    start = time.perf_counter()
    reused_from = ""
    if not plan.checkpoint:
        if reuse_dir is not None:
            checkpoint = _reuse(reuse_dir, train, digest, init_digest, arm_dir)
            reused_from = str(reuse_dir)
        elif not (record and record.get("digest") == digest and checkpoint.is_file()):
            logger.info("arm %s: training (%s)", plan.run_id, plan.description)
            _train(train, arm_dir, digest, init_digest)
            trained_now = True
    logger.info("arm %s: evaluating %s", plan.run_id, checkpoint)
    results = evaluate_checkpoint(checkpoint, test_sets, train, progress=progress, decode_set=plan.decode_set)
    for role, (pred, entries) in results.items():
        save_predictions(pred, entries, predictions[role])
    info = _training_info(arm_dir, train) if not plan.checkpoint else {}
    write_json({"name": plan.name, "run_id": plan.run_id, "seed": plan.seed, "description": plan.description,
                "digest": digest, "eval_digest": e_digest, "checkpoint": str(checkpoint),
                "init_from": plan.init_from, "init_checkpoint": str(init_checkpoint or ""),
                "evaluate_from": plan.evaluate_from, "decode_set": list(plan.decode_set),
                "reused_from": reused_from, "training": info,
                "test_sets": {k: dataclasses.asdict(v) for k, v in test_sets.items()},
                "model": {"backbone": train.model.backbone, "input_size": train.model.input_size,
                          "joint_set": train.model.joint_set},
                "augment": dataclasses.asdict(train.augment), "lr": train.optim.lr,
                "wall_seconds_this_call": round(time.perf_counter() - start, 1)},
               arm_dir / ARM_JSON)
    return ArmOutcome(plan, arm_dir, checkpoint, digest, trained_now)


def _reuse(run_dir: Path, train: Config, digest: str, init_digest: str, arm_dir: Path) -> Path:
    """The final checkpoint of an identical, finished run elsewhere (e.g. another study's arm)."""
    last = run_dir / LAST if run_dir.is_dir() else run_dir
    if not last.is_file():
        raise FileNotFoundError(f"--reuse: no checkpoint at {last}")
    saved, done = _saved_checkpoint(last)
    saved.data.root = train.data.root
    if config_digest(saved, init_digest) != digest:
        raise ArmConfigMismatch(f"--reuse {run_dir}: that run's config differs from this arm's (budget, data, "
                                "augmentation, model or seed); only an identical run can stand in for an arm")
    if done < train.train.epochs:
        raise ArmConfigMismatch(f"--reuse {run_dir}: that run has finished {done} of {train.train.epochs} epochs")
    log = last.parent / LOG_CSV
    if log.is_file():
        (arm_dir / LOG_CSV).write_text(log.read_text())  # the learning curve, for the report's figures
    logger.info("arm %s: reusing the identical run in %s", arm_dir.name, last.parent)
    return last


def run_arms(plans: list[ArmPlan], out_dir: Path, test_sets: dict[str, SourceConfig],
             reuse: dict[str, Path], progress: bool = True) -> list[ArmOutcome]:
    """Every arm in order; fine-tuning arms start from their base arm's final checkpoint."""
    done: dict[str, ArmOutcome] = {}
    unknown = sorted(set(reuse) - {p.run_id for p in plans})
    if unknown:
        raise ValueError(f"--reuse names arms {unknown} that this study does not run; its arms: "
                         f"{[p.run_id for p in plans]}")
    for plan in tqdm(plans, desc="arms", unit="arm", disable=not progress):
        init_checkpoint, init_digest = None, ""
        if plan.evaluate_from:
            # An evaluate-only arm scores the final model of an arm trained before it.
            trained = done.get(plan.evaluate_from)
            if trained is None:
                raise ValueError(f"arm {plan.run_id} evaluates {plan.evaluate_from}, which this study does not run")
            plan = dataclasses.replace(plan, checkpoint=str(trained.checkpoint))
        if plan.init_from:
            base = done.get(plan.init_from)
            if base is None:
                raise ValueError(f"arm {plan.run_id} starts from {plan.init_from}, which this study does not run")
            init_checkpoint, init_digest = base.checkpoint, base.digest
        done[plan.run_id] = run_arm(plan, out_dir / "arms" / plan.run_id, test_sets, init_checkpoint, init_digest,
                                    reuse.get(plan.run_id), progress)
    return list(done.values())

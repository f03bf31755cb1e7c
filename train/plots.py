"""Figures like the paper's: per-joint PCK over epochs, keypoint spread and missing joints per dataset,
and a bar chart comparing runs. Matplotlib with the Agg backend (files only, no display)."""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from rehab.pose_annotations import PoseRecord

logger = logging.getLogger(__name__)

DPI = 120


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


TEXT_COLUMNS = ("device",)


def read_log(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """log.csv's numeric columns as float arrays (empty cells -> NaN); text columns (device) are left out."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training log not found: {path}")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{path} has no epoch rows")
    return {k: np.array([float(r[k]) if r[k] not in ("", None) else np.nan for r in rows]) for k in rows[0]
            if k not in TEXT_COLUMNS}


def val_column(log: Mapping[str, np.ndarray]) -> str:
    """The validation column of a log.csv: val_pckh for a run validated with PCKh, else val_pck."""
    return "val_pckh" if "val_pckh" in log else "val_pck"


def plot_pck_over_epochs(log_csv: str | os.PathLike[str], out_png: str | os.PathLike[str], title: str = "") -> Path:
    """One line per joint (validation PCK per epoch) plus the mean in black."""
    plt = _pyplot()
    log = read_log(log_csv)
    epochs = log["epoch"]
    fig, ax = plt.subplots(figsize=(9, 5))
    column = val_column(log)
    prefix = column[len("val_"):] + "_"
    for key in sorted(k for k in log if k.startswith(prefix)):
        if np.isfinite(log[key]).any():
            ax.plot(epochs, log[key], label=key[len(prefix):], linewidth=1)
    ax.plot(epochs, log[column], color="black", linewidth=2.5, label="mean")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{prefix[:-1].upper()} (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title or f"per-joint PCK over epochs ({Path(log_csv).parent.name})")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.grid(alpha=0.3)
    return _save(fig, out_png, plt)


def _save(fig, out_png, plt) -> Path:
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    logger.info("wrote %s", out)
    return out


def _image_size(record: PoseRecord) -> tuple[int, int] | None:
    if record.image_size is not None:
        return record.image_size
    if not record.image_path.is_file():
        return None
    from PIL import Image  # reads only the header

    with Image.open(record.image_path) as img:
        return img.size


def normalised_keypoints(records: list[PoseRecord]) -> tuple[np.ndarray, np.ndarray]:
    """(M, K, 2) annotated joints divided by the image size (NaN elsewhere), and the mask of used records.

    Records whose image size is unknown (no size in the annotation and no image file) are left out.
    """
    out, used = [], []
    for r in records:
        size = _image_size(r)
        used.append(size is not None)
        if size is None:
            continue
        kp = np.where(r.annotated[:, None], r.joints_px / np.asarray(size, dtype=np.float64), np.nan)
        out.append(kp)
    if not out:
        raise ValueError("no record has a known image size; cannot normalise keypoints")
    return np.stack(out), np.array(used)


def plot_keypoint_spread(datasets: dict[str, list[PoseRecord]], out_png: str | os.PathLike[str],
                         max_points: int = 3000, seed: int = 0) -> Path:
    """One panel per dataset: every annotated joint at its position in the (unit) image frame."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets), 4.5), squeeze=False)
    rng = np.random.default_rng(seed)
    for ax, (name, records) in zip(axes[0], datasets.items()):
        if len(records) > max_points:
            records = [records[i] for i in np.sort(rng.choice(len(records), max_points, replace=False))]
        kp, _ = normalised_keypoints(records)
        joints = records[0].joint_set.joints
        for k, joint in enumerate(joints):
            ax.scatter(kp[:, k, 0], kp[:, k, 1], s=1, alpha=0.3, label=joint)
        ax.set_xlim(0, 1)
        ax.set_ylim(1, 0)
        ax.set_aspect("equal")
        ax.set_title(f"{name} ({len(kp)} people)")
        ax.set_xlabel("x / image width")
        ax.set_ylabel("y / image height")
    axes[0][-1].legend(fontsize=6, markerscale=6, loc="center left", bbox_to_anchor=(1, 0.5))
    return _save(fig, out_png, plt)


def missing_fractions(records: list[PoseRecord]) -> dict[str, tuple[float, float]]:
    """joint -> (fraction not annotated, fraction annotated but occluded)."""
    annotated = np.stack([r.annotated for r in records])
    visible = np.stack([r.visible for r in records])
    joints = records[0].joint_set.joints
    return {j: (float((~annotated[:, k]).mean()), float((annotated[:, k] & ~visible[:, k]).mean()))
            for k, j in enumerate(joints)}


def plot_missing_joints(datasets: dict[str, list[PoseRecord]], out_png: str | os.PathLike[str]) -> Path:
    """Per dataset and joint: fraction not annotated (solid) and occluded (hatched), stacked."""
    plt = _pyplot()
    names = list(datasets)
    all_joints: list[str] = []
    for records in datasets.values():
        all_joints += [j for j in records[0].joint_set.joints if j not in all_joints]
    width = 0.8 / len(names)
    x = np.arange(len(all_joints))
    fig, ax = plt.subplots(figsize=(max(8, 0.6 * len(all_joints)), 4.5))
    for i, name in enumerate(names):
        frac = missing_fractions(datasets[name])
        missing = np.array([frac.get(j, (np.nan, np.nan))[0] for j in all_joints]) * 100
        occluded = np.array([frac.get(j, (np.nan, np.nan))[1] for j in all_joints]) * 100
        bars = ax.bar(x + i * width, missing, width, label=f"{name}: not annotated")
        ax.bar(x + i * width, occluded, width, bottom=missing, hatch="//", alpha=0.5,
               color=bars.patches[0].get_facecolor(), label=f"{name}: occluded")
    ax.set_xticks(x + width * (len(names) - 1) / 2, all_joints, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("% of people")
    ax.set_title("missing joints per dataset")
    ax.legend(fontsize=8)
    return _save(fig, out_png, plt)


def _run_label(path: Path) -> str:
    return path.parent.name if path.name in ("eval.json", "finetune.json") else path.stem


def load_eval_means(path: str | os.PathLike[str], metric: str = "pckh") -> dict[str, float]:
    """dataset -> mean ``metric`` from an evaluate JSON (a list of reports or {"reports": [...]})."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"evaluation file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"cannot read evaluation JSON {path}: {exc}") from None
    reports = data.get("reports", []) if isinstance(data, dict) else data
    if not reports:
        raise ValueError(f"{path} holds no evaluation reports")
    return {r["dataset"]: (r[metric]["mean"] if r[metric]["mean"] is not None else np.nan) for r in reports}


def plot_compare_runs(eval_jsons: list[str | os.PathLike[str]], out_png: str | os.PathLike[str],
                      metric: str = "pckh", labels: list[str] | None = None) -> Path:
    """Grouped bars: one group per run, one bar per dataset plus their average (the paper's summary chart)."""
    plt = _pyplot()
    paths = [Path(p) for p in eval_jsons]
    labels = labels or [_run_label(p) for p in paths]
    means = [load_eval_means(p, metric) for p in paths]
    datasets = sorted({d for m in means for d in m})
    columns = datasets + ["average"]
    width = 0.8 / len(columns)
    x = np.arange(len(paths))
    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(paths)), 4.5))
    for i, col in enumerate(columns):
        if col == "average":
            values = [np.nanmean([m.get(d, np.nan) for d in datasets]) for m in means]
        else:
            values = [m.get(col, np.nan) for m in means]
        bars = ax.bar(x + i * width, values, width, label=col)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(x + width * (len(columns) - 1) / 2, labels, rotation=20, ha="right")
    ax.set_ylabel(f"{metric.upper()} mean (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"runs compared ({metric})")
    ax.legend(fontsize=8)
    return _save(fig, out_png, plt)

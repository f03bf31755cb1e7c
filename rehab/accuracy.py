"""Evaluation of pose predictions against annotations, shared by training and the runtime (no torch).

PCK@alpha with the torso (annotated left shoulder to right hip), PCKh@alpha with the MPII head box or, for
LSP-style data, the paper's head segment (neck to head top), and 2-D joint-angle errors. Training
(train/predict.py) and `rehab evaluate` both fill a ``Predictions`` and call these functions, so a model
scores the same in both.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import numpy as np

from rehab.core.angles import compute_angle, get_angle
from rehab.core.metrics import PCKResult, lsp_torso_size, mpii_head_size, pck, pckh
from rehab.core.skeleton import LIMB_JOINTS, JointSet, joint_set_from_names, mapping

logger = logging.getLogger(__name__)

# Joint angles compared between prediction and annotation (both sides of each).
ANGLE_GROUPS = {
    "knee": ("left_knee_flexion", "right_knee_flexion"),
    "elbow": ("left_elbow_flexion", "right_elbow_flexion"),
    "hip": ("left_hip_flexion", "right_hip_flexion"),
    "shoulder": ("left_shoulder_abduction", "right_shoulder_abduction"),
}


@dataclass(frozen=True, eq=False)
class Predictions:
    """keypoints_px / gt_px (N, K, 2) image pixels, scores (N, K), annotated (N, K), head boxes (N, 4)."""

    keypoints_px: np.ndarray
    scores: np.ndarray
    gt_px: np.ndarray
    annotated: np.ndarray
    head_box_xyxy: np.ndarray
    joint_names: tuple[str, ...]
    mean_loss: float = float("nan")


def _limb_exclude(joint_set: JointSet, limb_only: bool) -> list[int] | None:
    if not limb_only:
        return None
    return [i for i, j in enumerate(joint_set.joints) if j not in LIMB_JOINTS]


def pck_torso(pred: Predictions, joint_set: JointSet, alpha: float = 0.2, limb_joints_only: bool = True) -> PCKResult:
    """PCK@alpha with torso = annotated left shoulder to right hip; images without a torso are skipped."""
    gt = pred.gt_px
    torso = lsp_torso_size(gt, joint_set.index("left_shoulder"), joint_set.index("right_hip"))
    ok = np.isfinite(torso) & (torso > 0)
    if not ok.all():
        logger.info("PCK@%.2f: %d of %d images lack a torso (shoulder/hip not annotated) and are skipped",
                    alpha, int((~ok).sum()), len(ok))
    visible = pred.annotated & ok[:, None] & np.isfinite(gt).all(-1)
    return pck(pred.keypoints_px, np.nan_to_num(gt), visible, np.where(ok, torso, 1.0), alpha=alpha,
               exclude=_limb_exclude(joint_set, limb_joints_only))


def head_sizes(pred: Predictions, joint_set: JointSet) -> np.ndarray:
    """MPII head-box size where a head box exists, else the paper's head segment |neck - head_top|."""
    boxes = pred.head_box_xyxy
    have_box = np.isfinite(boxes).all(1)
    sizes = np.full(len(boxes), np.nan)
    if have_box.any():
        sizes[have_box] = mpii_head_size(boxes[have_box].reshape(-1, 2, 2))
    if (~have_box).any() and joint_set.has("neck") and joint_set.has("head_top"):
        seg = pred.gt_px[:, joint_set.index("neck")] - pred.gt_px[:, joint_set.index("head_top")]
        sizes[~have_box] = np.hypot(seg[~have_box, 0], seg[~have_box, 1])
    return sizes


def pckh_head(pred: Predictions, joint_set: JointSet, alpha: float = 0.5) -> PCKResult:
    """PCKh@alpha; MPII excludes pelvis and thorax from the mean, as in its reference evaluation."""
    sizes = head_sizes(pred, joint_set)
    ok = np.isfinite(sizes) & (sizes > 0)
    visible = pred.annotated & ok[:, None] & np.isfinite(pred.gt_px).all(-1)
    exclude = [joint_set.index(j) for j in ("pelvis", "thorax") if joint_set.has(j)]
    return pckh(pred.keypoints_px, np.nan_to_num(pred.gt_px), visible, np.where(ok, sizes, 1.0), alpha=alpha,
                exclude=exclude or None)


def angle_errors(pred: Predictions) -> dict[str, dict[str, float]]:
    """Per angle group: median and mean |predicted - annotated| in degrees where all three joints are annotated."""
    names = pred.joint_names
    gt = np.where(pred.annotated[..., None], pred.gt_px, np.nan)
    out = {}
    for group, angle_names in ANGLE_GROUPS.items():
        diffs = []
        for name in angle_names:
            defn = get_angle(name)
            if not all(j in names for j in defn.joints()):
                continue
            a_gt = compute_angle(defn, gt, names)
            a_pred = compute_angle(defn, pred.keypoints_px, names)
            ok = np.isfinite(a_gt) & np.isfinite(a_pred)
            diffs.append(np.abs(a_pred[ok] - a_gt[ok]))
        d = np.concatenate(diffs) if diffs else np.empty(0)
        out[group] = {"median_abs_deg": float(np.median(d)) if d.size else float("nan"),
                      "mean_abs_deg": float(np.mean(d)) if d.size else float("nan"), "count": int(d.size)}
    return out


def _per_joint(result: PCKResult, joint_set: JointSet) -> dict[str, float]:
    return {j: float(v) for j, v in zip(joint_set.joints, result.per_joint)}


_ENTRY_NUMBER = re.compile(r"^(.*?)(\d+)$")


def describe_images(entries: list[str]) -> str:
    """Which images a number comes from, from the records' entry names ("lsp im1001", "lspet im09501"):
    e.g. "lsp im1001-im2000 (1000 images)", or "lsp 300 images in im1001-im2000 (not contiguous)"; several
    datasets are joined with " + ". Names without a number are counted only."""
    groups: dict[str, list[str]] = {}
    for entry in entries:
        kind, _, name = entry.partition(" ")
        groups.setdefault(kind if name else "", []).append(name or kind)
    parts = []
    for kind, names in groups.items():
        prefix = f"{kind} " if kind else ""
        matches = [_ENTRY_NUMBER.match(n) for n in names]
        if not all(matches) or len({m.group(1) for m in matches}) != 1:
            parts.append(f"{prefix}{len(names)} images")
            continue
        numbers = [int(m.group(2)) for m in matches]
        first, last = names[numbers.index(min(numbers))], names[numbers.index(max(numbers))]
        contiguous = sorted(numbers) == list(range(min(numbers), max(numbers) + 1))
        parts.append(f"{prefix}{first}-{last} ({len(names)} images)" if contiguous else
                     f"{prefix}{len(names)} images in {first}-{last} (not contiguous)")
    return " + ".join(parts)


def select_numbered(records: list, numbers: str) -> list:
    """The records whose entry ends in a number within ``numbers`` ("A-B", inclusive, e.g. "801-1000")."""
    match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", numbers)
    if not match or int(match.group(1)) > int(match.group(2)):
        raise ValueError(f"--images must look like A-B with A <= B (e.g. 801-1000), got {numbers!r}")
    low, high = int(match.group(1)), int(match.group(2))
    picked = [r for r in records if (m := _ENTRY_NUMBER.match(r.entry)) and low <= int(m.group(2)) <= high]
    if not picked:
        raise ValueError(f"no image of this split is numbered {low}-{high}")
    return picked


@dataclass(frozen=True)
class EvalReport:
    dataset: str
    num_images: int
    pck: dict = field(default_factory=dict)
    pckh: dict = field(default_factory=dict)
    angles_deg: dict = field(default_factory=dict)
    flip_test: bool = False
    images: str = ""  # which images, from describe_images (e.g. "lsp im1001-im2000 (1000 images)")

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "images": self.images, "num_images": self.num_images,
                "flip_test": self.flip_test, "pck": self.pck, "pckh": self.pckh, "angles_deg": self.angles_deg}


def report(pred: Predictions, joint_set: JointSet, dataset: str, flip_test: bool, pck_alpha: float = 0.2,
           pckh_alpha: float = 0.5, limb_joints_only: bool = True, images: str = "") -> EvalReport:
    p = pck_torso(pred, joint_set, pck_alpha, limb_joints_only)
    h = pckh_head(pred, joint_set, pckh_alpha)
    return EvalReport(
        dataset=dataset,
        num_images=len(pred.keypoints_px),
        pck={"alpha": pck_alpha, "mean": p.mean, "per_joint": _per_joint(p, joint_set),
             "joints_in_mean": [j for j, inc in zip(joint_set.joints, p.included) if inc]},
        pckh={"alpha": pckh_alpha, "mean": h.mean, "per_joint": _per_joint(h, joint_set),
              "joints_in_mean": [j for j, inc in zip(joint_set.joints, h.included) if inc]},
        angles_deg=angle_errors(pred),
        flip_test=flip_test,
        images=images,
    )


def _ci_dict(result: PCKResult, n_boot: int, seed: int) -> dict:
    """Bootstrap 95% interval of the mean over images, and per joint."""
    from rehab.core.metrics import bootstrap_ci

    mean, low, high = bootstrap_ci(result.included_correct(), result.included_visible(), n_boot=n_boot, seed=seed)
    per_joint = {}
    for k in np.flatnonzero(result.included):
        _, lo, hi = bootstrap_ci(result.correct[:, [k]], result.visible[:, [k]], n_boot=n_boot, seed=seed)
        per_joint[int(k)] = [lo, hi]
    return {"mean": [low, high], "per_joint": per_joint}


def predict_records(model, records, flip_test: bool | None = None, batch_size: int = 1, progress: bool = True,
                    desc: str = "evaluate") -> tuple[Predictions, list[float]]:
    """A runtime ``PoseModel`` over annotated records, the whole image as input (LSP protocol).

    Returns the predictions in the records' joint set (joints the model lacks are NaN) and, with ``batch_size``
    1, the time of each whole ``predict()`` call (preprocessing, ONNX Runtime, decoding) in ms; larger batches
    go through ``predict_batch`` and time nothing. `rehab evaluate` and export's PCK check both score this.
    """
    import time

    import cv2
    from tqdm import tqdm

    if not records:
        raise ValueError("no annotated images to evaluate")
    joint_set = records[0].joint_set
    src, dst = mapping(joint_set_from_names(model.info.joint_names), joint_set)
    kp, scores, latency_ms = [], [], []
    for start in tqdm(range(0, len(records), batch_size), desc=desc, unit="img" if batch_size == 1 else "batch",
                      disable=not progress):
        images = []
        for rec in records[start:start + batch_size]:
            image = cv2.imread(str(rec.image_path), cv2.IMREAD_COLOR)
            if image is None:
                raise FileNotFoundError(f"cannot read image {rec.image_path} ({rec.entry})")
            images.append(image)
        t0 = time.perf_counter()
        poses = [model.predict(images[0], flip_test=flip_test)] if batch_size == 1 else model.predict_batch(
            images, flip_test=flip_test)
        if batch_size == 1:
            latency_ms.append((time.perf_counter() - t0) * 1e3)
        for pose in poses:
            points = np.full((joint_set.num_joints, 2), np.nan, dtype=pose.keypoints_px.dtype)
            points[dst] = pose.keypoints_px[src]
            joint_scores = np.zeros(joint_set.num_joints, np.float32)
            joint_scores[dst] = pose.scores[src]
            kp.append(points)
            scores.append(joint_scores)
    boxes = np.stack([r.head_box_xyxy if r.head_box_xyxy is not None else np.full(4, np.nan) for r in records])
    pred = Predictions(np.stack(kp), np.stack(scores).astype(np.float32), np.stack([r.joints_px for r in records]),
                       np.stack([r.annotated for r in records]), boxes, joint_set.joints)
    return pred, latency_ms


def evaluate_pose_model(model, records, flip_test: bool | None = None, n_boot: int = 1000, seed: int = 0,
                        progress: bool = True, dataset: str = "lsp") -> dict:
    """Run a runtime ``PoseModel`` over annotated records with the whole image as input (LSP protocol).

    ``records`` are ``rehab.pose_annotations.PoseRecord`` of one joint set; the model must predict every joint of
    that set (it may predict more). Returns a JSON-ready dict: PCK@0.2 (12 limb joints, torso), PCKh@0.5
    (head segment or box), joint-angle errors, bootstrap CIs and the model's per-image latency.
    """
    if not records:
        raise ValueError("no annotated images to evaluate")
    joint_set = records[0].joint_set
    missing = [j for j in joint_set.joints if j not in model.info.joint_names]
    if missing:
        raise ValueError(f"the model does not predict {', '.join(missing)}, needed to score {joint_set.name}")
    pred, latency_ms = predict_records(model, records, flip_test=flip_test, progress=progress)
    flip = model.info.flip_test if flip_test is None else bool(flip_test)
    rep = report(pred, joint_set, dataset, flip, images=describe_images([r.entry for r in records])).to_dict()
    p = pck_torso(pred, joint_set)
    h = pckh_head(pred, joint_set)
    for key, result in (("pck", p), ("pckh", h)):
        ci = _ci_dict(result, n_boot, seed)
        rep[key]["ci95"] = ci["mean"]
        rep[key]["per_joint_ci95"] = {joint_set.joints[k]: v for k, v in ci["per_joint"].items()}
    lat = np.asarray(latency_ms)
    rep["latency_ms"] = {"median": float(np.median(lat)), "p90": float(np.percentile(lat, 90)),
                         "note": "whole predict() call per image: preprocessing, ONNX Runtime, decoding"}
    rep["model"] = {"path": str(model.path), "name": model.info.name, "providers": list(model.providers)}
    return rep


def format_report(rep: dict) -> str:
    """A plain-text table of a report from ``evaluate_pose_model``."""
    pck, pckh = rep["pck"], rep["pckh"]
    images = rep.get("images") or f"{rep['num_images']} images"
    lines = [f"{rep['dataset']}: {images}, flip test {'on' if rep['flip_test'] else 'off'}",
             f"{'joint':<16}{'PCK@' + str(pck['alpha']):>10}{'95% CI':>16}{'PCKh@' + str(pckh['alpha']):>11}"]
    for joint, value in pck["per_joint"].items():
        ci = pck.get("per_joint_ci95", {}).get(joint)
        ci_text = f"{ci[0]:.1f}-{ci[1]:.1f}" if ci else ""
        value_text = f"{value:.1f}" if joint in pck["joints_in_mean"] else "-"
        lines.append(f"{joint:<16}{value_text:>10}{ci_text:>16}{pckh['per_joint'][joint]:>11.1f}")
    lines.append(f"{'mean':<16}{pck['mean']:>10.2f}{pck['ci95'][0]:>9.1f}-{pck['ci95'][1]:<6.1f}{pckh['mean']:>11.2f}")
    for group, err in rep["angles_deg"].items():
        lines.append(f"angle error {group:<9} median {err['median_abs_deg']:.1f} deg, mean {err['mean_abs_deg']:.1f} deg "
                     f"({err['count']} angles)")
    if "latency_ms" in rep:
        lines.append(f"latency per image: median {rep['latency_ms']['median']:.1f} ms, p90 {rep['latency_ms']['p90']:.1f} ms")
    return "\n".join(lines)

"""The study report (no torch): numbers from the arms' saved predictions, then JSON, markdown and figures.

Every number comes from predictions_<role>.npz in the arm folders through rehab.accuracy (the same PCK and
PCKh code as training and the runtime), so the report can be rebuilt at any time without the models.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rehab.core.metrics import PCKResult
from rehab.core.skeleton import JointSet, get_joint_set
from rehab.accuracy import Predictions, pck_torso, pckh_head
from rehab.core.files import write_json
from train.studies import stats

logger = logging.getLogger(__name__)

STUDY_JSON = "study.json"
REPORT_JSON = "report.json"
REPORT_MD = "README.md"
ROLES = ("source", "target")
COLUMNS = ("source", "target", "average")
METRIC_NAMES = {"pck": "PCK@{alpha:g} (torso, 12 limb joints)", "pckh": "PCKh@{alpha:g} (head size)"}

# The seed paper's numbers (ResNet-50, MPII -> LSP, PCKh@0.5 %), for reference next to ours.
PAPER_TABLES = {
    "augmentation": {"caption": "Table 2 (MPII train; PCKh@0.5 on MPII / LSP)",
                     "rows": {"normal": (85.60, 86.53, 86.07), "weak": (86.22, 89.19, 87.71),
                              "strong": (86.57, 91.25, 88.91)}},
    "mixed": {"caption": "Table 3 (PCKh@0.5 on MPII / LSP)",
              "rows": {"source (MPII)": (86.38, 79.90, 83.14), "mixed (MPII + 700 LSP)": (85.68, 83.04, 84.36)}},
    "finetune": {"caption": "Tables 4-5 (fine-tuned on LSP; PCKh@0.5 on MPII / LSP)",
                 "rows": {"base (no transfer)": (86.38, 79.90, 83.14), "unchanged LR": (81.17, 81.01, 81.09),
                          "lr 1e-4": (84.79, 79.62, 82.21), "lr 5e-5": (85.27, 81.13, 83.20),
                          "lr 1e-5": (86.46, 82.09, 84.28)}},
}


@dataclass(frozen=True)
class ArmScores:
    run_id: str
    joints: tuple[str, ...]
    results: dict[str, dict[str, PCKResult]]  # metric -> role -> result
    entries: dict[str, np.ndarray]  # role -> image entry names


def load_predictions(path: Path) -> tuple[Predictions, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"arm predictions not found: {path}; run the study (without --report-only) first")
    with np.load(path, allow_pickle=False) as data:
        pred = Predictions(data["keypoints_px"], data["scores"], data["gt_px"], data["annotated"].astype(bool),
                           data["head_box_xyxy"], tuple(str(j) for j in data["joint_names"]))
        return pred, data["entries"].astype(str)


def _joint_set(names: tuple[str, ...]) -> JointSet:
    for candidate in ("lsp14", "mpii16"):
        js = get_joint_set(candidate)
        if js.joints == names:
            return js
    raise ValueError(f"predictions hold joints {names}, which are neither LSP-14 nor MPII-16")


def score_arm(arm_dir: Path, run_id: str, alphas: dict[str, float]) -> ArmScores:
    results: dict[str, dict[str, PCKResult]] = {"pck": {}, "pckh": {}}
    entries = {}
    joints: tuple[str, ...] = ()
    for role in ROLES:
        pred, names = load_predictions(arm_dir / f"predictions_{role}.npz")
        joint_set = _joint_set(pred.joint_names)
        results["pck"][role] = pck_torso(pred, joint_set, alphas["pck"], limb_joints_only=True)
        results["pckh"][role] = pckh_head(pred, joint_set, alphas["pckh"])
        entries[role] = names
        joints = joint_set.joints
    return ArmScores(run_id, joints, results, entries)


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 3)


def _metric_summary(results: dict[str, PCKResult], joints: tuple[str, ...], n_boot: int, ci: float,
                    seed: int) -> dict:
    out = {}
    for role in ROLES:
        r = results[role]
        mean, low, high = stats.domain_ci(r, n_boot, ci, seed)
        joint_ci = stats.per_joint_ci(r, n_boot, ci, seed)
        out[role] = {"mean": _num(mean), "ci": [_num(low), _num(high)], "num_images": r.num_images,
                     "per_joint": {j: _num(v) for j, v in zip(joints, r.per_joint)},
                     "per_joint_ci": {j: ([_num(c[0]), _num(c[1])] if c else None) for j, c in zip(joints, joint_ci)},
                     "per_joint_count": {j: int(c) for j, c in zip(joints, r.counts)},
                     "joints_in_mean": [j for j, inc in zip(joints, r.included) if inc]}
    mean, low, high = stats.average_ci([results[r] for r in ROLES], n_boot, ci, seed)
    out["average"] = {"mean": _num(mean), "ci": [_num(low), _num(high)]}
    return out


def _paired(a: ArmScores, b: ArmScores, metric: str, n_boot: int, ci: float, seed: int) -> dict:
    out = {}
    for role in ROLES:
        p = stats.paired_domain(a.results[metric][role], b.results[metric][role], n_boot, ci, seed)
        out[role] = {"diff": _num(p.diff), "ci": [_num(p.ci_low), _num(p.ci_high)], "p_value": p.p_value}
    p = stats.paired_average([a.results[metric][r] for r in ROLES], [b.results[metric][r] for r in ROLES],
                             n_boot, ci, seed)
    out["average"] = {"diff": _num(p.diff), "ci": [_num(p.ci_low), _num(p.ci_high)], "p_value": p.p_value}
    return out


def build_report(out_dir: Path) -> dict:
    """The report dict of the study in ``out_dir`` (study.json + arms/*/arm.json + predictions)."""
    meta_path = out_dir / STUDY_JSON
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} not found: {out_dir} is not a study folder")
    meta = json.loads(meta_path.read_text())
    study = meta["study"]
    n_boot, ci, seed = study["n_boot"], study["ci"], study["stats_seed"]
    alphas = meta["alphas"]
    arms, scores = [], {}
    for plan in meta["arms"]:
        arm_dir = out_dir / "arms" / plan["run_id"]
        record = json.loads((arm_dir / "arm.json").read_text()) if (arm_dir / "arm.json").is_file() else None
        if record is None:
            raise FileNotFoundError(f"{arm_dir / 'arm.json'} not found: arm {plan['run_id']} has not finished")
        s = score_arm(arm_dir, plan["run_id"], alphas)
        scores[plan["run_id"]] = s
        joints = s.joints
        arms.append({**plan, "training": record.get("training", {}), "checkpoint": record["checkpoint"],
                     "reused_from": record.get("reused_from", ""), "augment": record.get("augment", {}),
                     "lr": record.get("lr"), "joints": list(joints),
                     "pck": _metric_summary(s.results["pck"], joints, n_boot, ci, seed),
                     "pckh": _metric_summary(s.results["pckh"], joints, n_boot, ci, seed)})
    first = next(iter(scores.values()))
    for s in scores.values():
        for role in ROLES:
            if not np.array_equal(s.entries[role], first.entries[role]):
                raise ValueError(f"arm {s.run_id} was evaluated on other {role} images than arm {first.run_id}; "
                                 "delete its arm.json to evaluate it again")
    primary = study["primary_metric"]
    paired, final = [], None
    for arm in arms:
        base_id = meta["baseline_run_ids"][str(arm["seed"])]
        if arm["run_id"] == base_id:
            continue
        entry = {"run_id": arm["run_id"], "baseline": base_id, "seed": arm["seed"]}
        for metric in ("pck", "pckh"):
            entry[metric] = _paired(scores[arm["run_id"]], scores[base_id], metric, n_boot, ci, seed)
        paired.append(entry)
    if paired:
        best = max(paired, key=lambda e: next(a for a in arms if a["run_id"] == e["run_id"])[primary]["average"]["mean"]
                   or -1.0)
        final = {"run_id": best["run_id"], "baseline": best["baseline"], "metric": primary,
                 **best[primary]["average"]}
    return {"study": meta["kind"], "title": meta["title"], "domains": meta["domains"], "budget": meta["budget"],
            "seeds": study["seeds"], "primary_metric": primary, "alphas": alphas,
            "metric_names": {m: METRIC_NAMES[m].format(alpha=alphas[m]) for m in ("pck", "pckh")},
            "model": meta["model"], "baseline": meta["baseline"], "baseline_run_ids": meta["baseline_run_ids"],
            "ci_level": ci, "n_boot": n_boot,
            "arms": arms, "paired": paired, "final": final, "seed_means": _seed_means(arms, primary),
            "paper": PAPER_TABLES.get(meta["kind"]), "notes": meta.get("notes", [])}


def _seed_means(arms: list[dict], metric: str) -> list[dict]:
    """Per arm name over seeds: mean, min, max of the metric's columns (only with several seeds)."""
    names = list(dict.fromkeys(a["name"] for a in arms))
    out = []
    for name in names:
        runs = [a for a in arms if a["name"] == name]
        if len(runs) < 2:
            continue
        row = {"name": name, "seeds": len(runs)}
        for col in COLUMNS:
            values = [a[metric][col]["mean"] for a in runs]
            row[col] = {"mean": _num(float(np.mean(values))), "min": _num(min(values)), "max": _num(max(values))}
        out.append(row)
    return out


# ----------------------------------------------------------------------------------------------
# markdown


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _fmt_ci(entry: dict) -> str:
    lo, hi = entry["ci"]
    return f"{_fmt(entry['mean'])} [{_fmt(lo)}, {_fmt(hi)}]"


def _fmt_p(p: float, n_boot: int) -> str:
    """A permutation p-value; at its resolution limit 1/(n_boot + 1) it is only an upper bound."""
    floor = 1.0 / (n_boot + 1)
    if p <= floor * (1 + 1e-9):
        return f"<{floor:.1e}" if floor < 0.001 else f"<{floor:.4f}"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def _p_text(p: float, n_boot: int) -> str:
    text = _fmt_p(p, n_boot)
    return f"p < {text[1:]}" if text.startswith("<") else f"p = {text}"


def _diff_cell(d: dict, n_boot: int) -> str:
    lo, hi = d["ci"]
    return f"{d['diff']:+.1f} [{_fmt(lo)}, {_fmt(hi)}], {_p_text(d['p_value'], n_boot)}"


def to_markdown(rep: dict) -> str:
    ci_pct = f"{100 * rep['ci_level']:g}%"
    dom = rep["domains"]
    primary = rep["primary_metric"]
    b = rep["budget"]
    domains_text = (f"Source domain: **{dom['source']['name']}** (train: {dom['source']['train']}; test: "
                    f"{dom['source']['test']}, {dom['source']['num_images']} images). Target domain: "
                    f"**{dom['target']['name']}** (train: {dom['target']['train']}; test: {dom['target']['test']}, "
                    f"{dom['target']['num_images']} images).")
    if rep["study"] == "ablation":
        domains_text = (f"Training: {dom['source']['train']} + {dom['target']['train']}. Validation, held out of "
                        f"that training data (no LSP test image is read): \"source\" = {dom['source']['test']} "
                        f"({dom['source']['num_images']} images), \"target\" = {dom['target']['test']} "
                        f"({dom['target']['num_images']} images).")
    budget_text = (f"Budget: {b['description']}. Seeds: {', '.join(map(str, rep['seeds']))}. Each arm's model is "
                   "its last checkpoint (no selection on test data).")
    stats_text = (f"Intervals: {ci_pct} percentile bootstrap over images ({rep['n_boot']} resamples); the average is "
                  "the unweighted mean of source and target, resampled within each test set. Paired differences "
                  "resample images jointly for both arms; p-values are two-sided sign-flip permutation tests per "
                  f"image, resolved down to 1/({rep['n_boot']} + 1) (more resamples: --set n_boot=N).")
    lines = [f"# {rep['title']}", "", domains_text, f"Model: {rep['model']['description']}.", budget_text,
             stats_text, ""]
    lines += [f"## Main table: {rep['metric_names'][primary]}", "",
              "| arm | description | source | target | average |", "|---|---|---|---|---|"]
    for a in rep["arms"]:
        mark = " (baseline)" if a["run_id"] in rep["baseline_run_ids"].values() else ""
        lines.append(f"| {a['run_id']}{mark} | {a['description']} | " +
                     " | ".join(_fmt_ci(a[primary][c]) for c in COLUMNS) + " |")
    other = "pckh" if primary == "pck" else "pck"
    lines += ["", f"## {rep['metric_names'][other]}", "", "| arm | source | target | average |", "|---|---|---|---|"]
    for a in rep["arms"]:
        lines.append(f"| {a['run_id']} | " + " | ".join(_fmt_ci(a[other][c]) for c in COLUMNS) + " |")
    if rep["seed_means"]:
        lines += ["", f"## Mean over seeds ({rep['metric_names'][primary]}; min-max across seeds)", "",
                  "| arm | seeds | source | target | average |", "|---|---|---|---|---|"]
        for row in rep["seed_means"]:
            cells = [f"{_fmt(row[c]['mean'])} ({_fmt(row[c]['min'])}-{_fmt(row[c]['max'])})" for c in COLUMNS]
            lines.append(f"| {row['name']} | {row['seeds']} | " + " | ".join(cells) + " |")
    lines += ["", f"## Paired differences against the baseline (percentage points, {ci_pct} CI, p-value)", ""]
    if rep["paired"]:
        lines += ["| arm | vs | metric | source | target | average |", "|---|---|---|---|---|---|"]
        for p in rep["paired"]:
            for metric in (primary, other):
                lines.append(f"| {p['run_id']} | {p['baseline']} | {metric} | " +
                             " | ".join(_diff_cell(p[metric][c], rep["n_boot"]) for c in COLUMNS) + " |")
    else:
        lines.append("(only the baseline arm ran)")
    if rep["final"]:
        f = rep["final"]
        lines += ["", (f"**Best arm vs baseline** ({f['metric']} average): {f['run_id']} - {f['baseline']} = "
                       f"{f['diff']:+.2f} points, {ci_pct} CI [{_fmt(f['ci'][0], 2)}, {_fmt(f['ci'][1], 2)}], "
                       f"{_p_text(f['p_value'], rep['n_boot'])}.")]
    for role in ROLES:
        lines += ["", f"## Per joint, {role} ({dom[role]['test']}): {rep['metric_names'][primary]}", ""]
        joints = rep["arms"][0]["joints"]
        lines += ["| joint | " + " | ".join(a["run_id"] for a in rep["arms"]) + " |",
                  "|---|" + "---|" * len(rep["arms"])]
        in_mean = set(rep["arms"][0][primary][role]["joints_in_mean"])
        for j in joints:
            label = j if j in in_mean else f"{j} (not in mean)"
            cells = []
            for a in rep["arms"]:
                v, c = a[primary][role]["per_joint"][j], a[primary][role]["per_joint_ci"][j]
                cells.append("-" if v is None else f"{v:.1f} [{_fmt(c[0])}, {_fmt(c[1])}]")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "## Training", "",
              "| arm | images seen | epochs x images | lr | augmentation | wall time | img/s | note |",
              "|---|---|---|---|---|---|---|---|"]
    for a in rep["arms"]:
        t = a["training"]
        aug = a["augment"]
        aug_text = (f"{aug.get('preset')} (rot {aug.get('rotation_deg'):g} deg, scale {aug.get('scale_factor'):g}, "
                    f"flip {aug.get('flip_prob'):g})") if aug.get("preset") else "-"
        note = f"reused {a['reused_from']}" if a["reused_from"] else (f"from {a['init_from']}" if a["init_from"] else "")
        if not t:
            given = (f"evaluates {a['evaluate_from']}'s final model (no training)" if a.get("evaluate_from")
                     else f"given model {a['checkpoint']}")
            lines.append(f"| {a['run_id']} | - | - | - | - | - | - | {given} |")
            continue
        lines.append(f"| {a['run_id']} | {t['images_seen']} | {t['epochs']} x {t['epoch_size']} | {a['lr']:g} | "
                     f"{aug_text} | {_fmt(t['train_seconds'] / 60 if t['train_seconds'] else None)} min | "
                     f"{_fmt(t['images_per_s'])} | {note} |")
    paper = rep["paper"]
    if paper:
        lines += ["", f"## The paper, for reference: {paper['caption']}", "", "| arm | MPII | LSP | average |",
                  "|---|---|---|---|"]
        lines += [f"| {name} | {v[0]:.2f} | {v[1]:.2f} | {v[2]:.2f} |" for name, v in paper["rows"].items()]
    lines += ["", "## Figures", ""]
    lines += [f"![{Path(f).stem}]({f})" for f in rep.get("figures", [])]
    if rep["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in rep["notes"]]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# figures


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, plt) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def plot_bars(rep: dict, metric: str, path: Path) -> str:
    """The paper's summary chart: per arm, source / target / average with CI error bars."""
    plt = _pyplot()
    arms = rep["arms"]
    width = 0.8 / len(COLUMNS)
    x = np.arange(len(arms))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(arms)), 4.5))
    for i, col in enumerate(COLUMNS):
        means = np.array([a[metric][col]["mean"] if a[metric][col]["mean"] is not None else np.nan for a in arms])
        lows = np.array([a[metric][col]["ci"][0] if a[metric][col]["ci"][0] is not None else np.nan for a in arms])
        highs = np.array([a[metric][col]["ci"][1] if a[metric][col]["ci"][1] is not None else np.nan for a in arms])
        err = np.vstack([means - lows, highs - means])
        bars = ax.bar(x + i * width, means, width, yerr=err, capsize=3, label=col)
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
    ax.set_xticks(x + width, [a["run_id"] for a in arms], rotation=15)
    ax.set_ylabel(f"{rep['metric_names'][metric]} (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{rep['title']}\n{metric.upper()} with {100 * rep['ci_level']:g}% CI", fontsize=10)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, path, plt)


def plot_per_joint(rep: dict, role: str, path: Path) -> str:
    plt = _pyplot()
    metric = rep["primary_metric"]
    arms = rep["arms"]
    joints = arms[0]["joints"]
    width = 0.8 / len(arms)
    x = np.arange(len(joints))
    fig, ax = plt.subplots(figsize=(max(8.0, 0.7 * len(joints)), 4.5))
    for i, a in enumerate(arms):
        values = [a[metric][role]["per_joint"][j] for j in joints]
        ax.bar(x + i * width, [np.nan if v is None else v for v in values], width, label=a["run_id"])
    ax.set_xticks(x + width * (len(arms) - 1) / 2, joints, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel(f"{metric.upper()} (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"per joint, {role}: {rep['domains'][role]['test']}")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, path, plt)


def plot_curves(rep: dict, out_dir: Path, path: Path) -> str | None:
    """Validation score (the per-epoch target subset) against training images seen, one line per arm."""
    from train.plots import read_log, val_column

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    drawn = False
    for a in rep["arms"]:
        log_path = out_dir / "arms" / a["run_id"] / "log.csv"
        if not log_path.is_file() or not a["training"]:
            continue
        log = read_log(log_path)
        column = val_column(log)
        if column not in log or not np.isfinite(log[column]).any():
            continue
        images = log["epoch"] * a["training"]["images_seen"] / max(a["training"]["epochs"], 1)
        ax.plot(images, log[column], marker="o", label=a["run_id"])
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("training images seen by the arm")
    ax.set_ylabel(f"{rep['primary_metric'].upper()} on the per-epoch target subset (%)")
    ax.set_title("learning curves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path, plt)


def plot_forgetting(rep: dict, path: Path) -> str:
    """Fine-tuning: source against target score, arrows from the base model to each fine-tuned arm."""
    plt = _pyplot()
    metric = rep["primary_metric"]
    fig, ax = plt.subplots(figsize=(6, 5))
    by_id = {a["run_id"]: a for a in rep["arms"]}
    for a in rep["arms"]:
        t, s = a[metric]["target"]["mean"], a[metric]["source"]["mean"]
        ax.scatter([t], [s], zorder=3)
        ax.annotate(a["run_id"], (t, s), fontsize=8, xytext=(4, 4), textcoords="offset points")
        base = by_id.get(a["init_from"])
        if base is not None:
            ax.annotate("", (t, s), (base[metric]["target"]["mean"], base[metric]["source"]["mean"]),
                        arrowprops={"arrowstyle": "->", "alpha": 0.5})
    ax.set_xlabel(f"target {metric.upper()} (%)")
    ax.set_ylabel(f"source {metric.upper()} (%)")
    ax.set_title("adaptation (right) against forgetting (down)")
    ax.grid(alpha=0.3)
    return _save(fig, path, plt)


def write_report(out_dir: str | os.PathLike[str], report_dir: str | os.PathLike[str] | None = None) -> Path:
    """Build the report of the study in ``out_dir`` and write report.json, README.md and PNGs to
    ``report_dir`` (default <out_dir>/report). Returns the markdown path."""
    from train.plots import plot_pck_over_epochs

    out_dir = Path(out_dir)
    report_dir = Path(report_dir) if report_dir is not None else out_dir / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    rep = build_report(out_dir)
    figures = [plot_bars(rep, rep["primary_metric"], report_dir / f"bars_{rep['primary_metric']}.png")]
    other = "pckh" if rep["primary_metric"] == "pck" else "pck"
    figures.append(plot_bars(rep, other, report_dir / f"bars_{other}.png"))
    figures += [plot_per_joint(rep, role, report_dir / f"per_joint_{role}.png") for role in ROLES]
    curves = plot_curves(rep, out_dir, report_dir / "curves.png")
    if curves:
        figures.append(curves)
    if rep["study"] == "finetune":
        figures.append(plot_forgetting(rep, report_dir / "forgetting.png"))
    for a in rep["arms"]:
        log_path = out_dir / "arms" / a["run_id"] / "log.csv"
        if log_path.is_file() and a["training"]:
            try:
                figures.append(plot_pck_over_epochs(log_path, report_dir / f"joints_over_epochs_{a['run_id']}.png",
                                                    title=f"{a['run_id']}: per-joint {rep['primary_metric'].upper()} "
                                                          "on the per-epoch target subset").name)
            except (KeyError, ValueError) as exc:
                logger.warning("no per-joint curve for %s: %s", a["run_id"], exc)
    rep["figures"] = figures
    write_json(rep, report_dir / REPORT_JSON)
    md = report_dir / REPORT_MD
    md.write_text(to_markdown(rep))
    logger.info("report written to %s", report_dir)
    return md


# ----------------------------------------------------------------------------------------------
# one table over several ablation reports


def ablation_pairs(report_dirs: list[Path]) -> list[tuple[dict, dict, dict, dict, str]]:
    """(report, arm, its baseline arm, paired differences in the primary metric, folder name) for every arm of the
    ablation report.json files in ``report_dirs`` (folders without one, or of another study, are skipped)."""
    out = []
    for folder in sorted(report_dirs):
        path = Path(folder) / REPORT_JSON
        if not path.is_file():
            continue
        rep = json.loads(path.read_text())
        if rep.get("study") != "ablation":
            continue
        by_id = {a["run_id"]: a for a in rep["arms"]}
        for pair in rep["paired"]:
            out.append((rep, by_id[pair["run_id"]], by_id[pair["baseline"]], pair[rep["primary_metric"]],
                        Path(folder).name))
    return out


def ablation_summary(report_dirs: list[Path]) -> str:
    """Markdown: one row per ablation arm (from each folder's report.json), its primary-metric score and its
    paired difference to the baseline with CI and p-value, per validation set and on average."""
    pairs = ablation_pairs(report_dirs)
    rows = [(arm, diff, rep["n_boot"], folder, base) for rep, arm, base, diff, folder in pairs]
    meta = pairs[0][0] if pairs else None
    baseline = pairs[0][2] if pairs else None
    if meta is None:
        raise FileNotFoundError(f"no ablation report.json under {', '.join(map(str, report_dirs)) or '(nothing)'}")
    metric = meta["primary_metric"]
    dom = meta["domains"]
    lines = ["# Ablations against the baseline recipe", "",
             f"{meta['metric_names'][metric]} on the validation images held out of training: source = "
             f"{dom['source']['test']}, target = {dom['target']['test']}. Budget: {meta['budget']['description']}; "
             f"seed {', '.join(map(str, meta['seeds']))}. Differences are paired (same images), "
             f"{100 * meta['ci_level']:g}% bootstrap CI, sign-flip permutation p. Generated by "
             "`python -m train study-summary FOLDER`; each arm's full report is in its folder. Each arm is paired "
             "with the baseline trained in its own study run (the column \"its baseline\": a baseline retrained in "
             "another session scores a little differently).", "",
             "| arm | change | source | target | average | its baseline (average) | average - baseline | "
             "source - baseline | target - baseline |", "|---|---|---|---|---|---|---|---|---|"]
    lines.append("| baseline | - | " + " | ".join(_fmt_ci(baseline[metric][c]) for c in COLUMNS) + " | - | - | - | - |")
    for arm, diff, n_boot, folder, base in rows:
        lines.append(f"| [{arm['run_id']}]({folder}/README.md) | {arm['description']} | "
                     + " | ".join(_fmt_ci(arm[metric][c]) for c in COLUMNS) + f" | {base[metric]['average']['mean']:.1f} | "
                     + " | ".join(_diff_cell(diff[c], n_boot) for c in ("average", "source", "target")) + " |")
    return "\n".join(lines) + "\n"

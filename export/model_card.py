"""Write the model card of an exported model from what was measured: its metadata, the training logs, an
evaluation report from `rehab evaluate --json` (optionally a flip-test one and the MediaPipe side-by-side of
benchmarks/bench_peer.py), and a learning-curve figure.

    python -m export.model_card --model rehab/models/default.onnx \
        --step train/configs/default_mnv2.yaml=RUN1 [--step CONFIG2=RUN2 ...] \
        --eval EVAL.json [--eval-flip EVAL_FLIP.json] [--peer benchmarks/results/peer_lsp.json] \
        [--presence-eval P.json] [--ablations docs/ablations/budget36k] --out rehab/models/MODEL_CARD.md

Each ``--step`` is one training step of the recipe, in order: the config it ran and its run folder (or log.csv);
what the step did (data, input size, LR, warm start, what was frozen) is read from the config.

Only the part between the GENERATED markers is rewritten; what an engineer wrote around it (status, trade-offs,
how to reproduce) is kept.
"""

from __future__ import annotations

import csv
import json
import platform
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import typer

from rehab.core.machine import cpu_name
from rehab.runtime.model import PoseModel
from train.config import Config, load_config, read_yaml_mapping, resolve
from train.studies.report import ablation_pairs

LICENCE_NOTE = (
    "Trained on LSP and LSPET (Flickr images released for research use only). The weights inherit that "
    "restriction: research and evaluation use; check the dataset terms before any commercial deployment.")
START, END = "<!-- generated:start -->", "<!-- generated:end -->"
# The default model's targets (issue 16): PCK above MediaPipe Pose full at its best (the peer JSON), median angle
# errors, and the latency of the shipped file.
TARGET_LATENCY_MS = 15.0
TARGET_ANGLE_DEG = {"knee": 6.0, "elbow": 10.0}


def read_log(run: Path) -> list[dict]:
    """The epoch rows of a run's log.csv (``run`` is the run folder or the csv itself)."""
    log = Path(run)
    if log.suffix != ".csv":
        log = log / "log.csv"
    if not log.is_file():
        raise FileNotFoundError(f"no training log at {log}")
    with log.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{log} has no epoch rows")
    return rows


@dataclass(frozen=True)
class Step:
    """One training step of the recipe: the config it ran (as quoted in the card) and its log rows."""

    config: str
    rows: list[dict]

    @cached_property
    def cfg(self) -> Config:
        return resolve(load_config(self.config))

    @property
    def validates_pose(self) -> bool:
        return all(r.get("val_pck") for r in self.rows)

    @property
    def presence_only(self) -> bool:
        cfg = self.cfg
        return bool(cfg.model.presence_head and cfg.train.freeze_pose)


def _slice_text(start: int | None, stop: int | None) -> str:
    """A Python slice of a split's records in words: [:9500] -> 'records 1-9500', [-500:] -> 'the last 500'."""
    if start is not None and start < 0 and stop is None:
        return f"the last {-start} records"
    if stop is not None and stop < 0:
        return f"records {(start or 0) + 1} to {-stop} before the end"
    return f"records {(start or 0) + 1}-{stop if stop is not None else 'end'}"


def _source_text(src) -> str:
    """'lspet all, records 1-9500, person crop' from a data source of a training config."""
    if src.kind in ("video", "mined"):
        return f"{src.kind} {Path(src.path).name}"
    text = f"{src.kind} {src.split}" if src.kind != "synthetic" else "synthetic images"
    if src.start is not None or src.stop is not None:
        text += ", " + _slice_text(src.start, src.stop)
    if src.limit is not None:
        text += f", {src.limit} evenly spaced"
    if src.crop == "full_image":
        text += ", whole image"
    return text


def sources_text(sources) -> str:
    return " + ".join(_source_text(s) for s in sources)


def describe_step(step: Step) -> str:
    """One line: what a step of the recipe trained, on what, how, from where."""
    cfg = step.cfg
    seconds = sum(float(r["epoch_seconds"]) for r in step.rows)
    head = f"`{step.config}`: {len(step.rows)} epochs"
    if step.presence_only:
        what = "the presence output alone on person and person-free crops (pose weights frozen)"
    else:
        sched = ("cosine" if cfg.optim.lr_schedule == "cosine" else
                 f"x{cfg.optim.lr_factor:g} at epoch{'s' if len(cfg.optim.scaled_milestones) > 1 else ''} "
                 + ", ".join(str(m) for m in cfg.optim.scaled_milestones) if cfg.optim.scaled_milestones else
                 "constant")
        what = (f"{cfg.model.input_size[0]}x{cfg.model.input_size[1]} input on {sources_text(cfg.data.train)}, "
                f"{cfg.augment.preset} augmentation, {cfg.optim.optimizer.capitalize()} {cfg.optim.lr:g} ({sched})"
                + (", BatchNorm statistics frozen" if cfg.train.freeze_bn else ""))
    if cfg.finetune.checkpoint:
        start = f", from `{cfg.finetune.checkpoint}`"
    elif step.presence_only or "model" not in read_yaml_mapping(step.config):
        # a fine-tuning config (the network comes with the weights) or a presence step on a trained pose model
        start = ", from the previous step's model"
        what = what.replace(f"{cfg.model.input_size[0]}x{cfg.model.input_size[1]} input on ", "on ")
    else:
        start = f", backbone from ImageNet ({cfg.model.backbone_weights})" if cfg.model.backbone_init == "file" else ""
    took = f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"
    devices = list(dict.fromkeys(r["device"] for r in step.rows if r.get("device")))  # logs since 2026-12-07
    where = f" on {' / '.join(devices)}" if devices else ""
    return f"{head} training {what}{start}; {took}{where}"


def _validation_text(step: Step) -> str:
    cfg = step.cfg
    best = max(step.rows, key=lambda r: float(r["val_pck"]))
    last = step.rows[-1]
    text = (f"`{step.config}`: validation PCK@0.2 on {sources_text(cfg.data.val)}: best {float(best['val_pck']):.1f} "
            f"at epoch {best['epoch']}, last {float(last['val_pck']):.1f}")
    if any(s.kind == "lsp" and s.split in ("test", "all") for s in cfg.data.val):
        text += " (LSP test images: these are among the 1000 of the test below, so a checkpoint chosen here saw " \
                "part of the test set)"
    return text


def plot_curves(steps: list[Step], out_png: Path, target_pck: float | None = None) -> Path:
    """Validation PCK and train/val loss over epochs; each step continues the x axis (its validation set is the
    one its config names, so a step boundary can move the curve)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    offset = 0
    for i, step in enumerate(steps):
        xs = [offset + int(r["epoch"]) for r in step.rows]
        name = Path(step.config).stem
        if step.validates_pose:  # a presence step with frozen pose validates no PCK
            ax1.plot(xs, [float(r["val_pck"]) for r in step.rows], "os^vD"[i % 5] + "-", ms=3, label=name)
        lrs = [float(r["lr"]) for r in step.rows]
        for j in range(1, len(lrs)):
            if lrs[j] != lrs[j - 1]:  # decays and warm restarts
                ax1.axvline(xs[j] - 0.5, color="grey", ls=":", lw=1)
        if offset:
            ax1.axvline(offset + 0.5, color="black", ls="-", lw=0.6)
        ax2.plot(xs, [float(r.get("train_heatmap_loss") or r["train_loss"]) for r in step.rows], "-",
                 label=f"train loss ({name})")
        if all(r.get("val_loss") for r in step.rows):
            ax2.plot(xs, [float(r["val_loss"]) for r in step.rows], "--", label=f"val loss ({name})")
        offset = xs[-1]
    if target_pck is not None:
        ax1.axhline(target_pck, color="red", ls="--", lw=1, label=f"target (LSP test) {target_pck:g}")
    ax1.set(xlabel="epoch (steps in order)", ylabel="PCK@0.2 (%)", title="validation PCK@0.2 (each step's own set)")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=7)
    ax2.set(xlabel="epoch (steps in order)", ylabel="heatmap MSE", title="loss")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def peer_best(peer: dict | None, size: str = "full") -> tuple[str, float] | None:
    """(row name, PCK) of MediaPipe ``size`` at its best over the detection thresholds measured."""
    lsp = (peer or {}).get("lsp", {})
    rows = [(k, v["pck"]) for k, v in lsp.items() if isinstance(v, dict) and k.split("_det")[0] == f"mediapipe_{size}"]
    return max(rows, key=lambda kv: kv[1]) if rows else None


def _ablation_lines(folders: list[Path]) -> list[str]:
    """What each one-factor ablation bought: the arm, its change and its paired difference to its baseline."""
    lines = []
    for folder in folders:
        pairs = ablation_pairs([p.parent for p in Path(folder).glob("*/report.json")])
        if not pairs:
            continue
        lines += ["", f"`{folder}` ({pairs[0][0]['budget']['description']}; average PCK@0.2 of the held-out LSPET and "
                      "LSP train images, paired 95% bootstrap CI; full tables in its SUMMARY.md):", "",
                  "| arm | change | its baseline | arm - baseline | pays |", "|---|---|---|---|---|"]
        for rep, arm, base, diff, _ in pairs:
            d = diff["average"]
            lines.append(f"| {arm['run_id']} | {arm['description']} | "
                         f"{base[rep['primary_metric']]['average']['mean']:.1f} | "
                         f"{d['diff']:+.1f} [{d['ci'][0]:+.1f}, {d['ci'][1]:+.1f}] | "
                         f"{'yes' if d['diff'] > 0 and d['ci'][0] > 0 else 'no'} |")
    return (["", "## What each ablation bought (one factor at a time, equal budget)"] + lines) if lines else []


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _pck_table(report: dict, flip: dict | None) -> list[str]:
    pck, pckh = report["pck"], report["pckh"]
    head = "| joint | PCK@0.2 | 95% CI | PCKh@0.5 |" + (" PCK@0.2 flip test |" if flip else "")
    lines = [head, "|---|---|---|---|" + ("---|" if flip else "")]
    for joint, value in pck["per_joint"].items():
        ci = pck.get("per_joint_ci95", {}).get(joint)
        in_mean = joint in pck["joints_in_mean"]
        row = (f"| {joint} | {value:.1f}{'' if in_mean else ' (not in mean)'} | "
               f"{f'{ci[0]:.1f}-{ci[1]:.1f}' if ci else '-'} | {pckh['per_joint'][joint]:.1f} |")
        if flip:
            row += f" {flip['pck']['per_joint'][joint]:.1f} |"
        lines.append(row)
    mean = f"| **mean of the 12 limb joints** | **{pck['mean']:.1f}** | {pck['ci95'][0]:.1f}-{pck['ci95'][1]:.1f} | " \
           f"{pckh['mean']:.1f} |" + (f" {flip['pck']['mean']:.1f} |" if flip else "")
    return lines + [mean]


def _peer_table(peer: dict, ours: dict, precision: str) -> list[str]:
    lsp = peer.get("lsp", {})
    rows = [(f"ours (this model, {precision.upper()})", ours["pck"]["mean"], ours["pck"]["ci95"], ours["num_images"],
             ours.get("latency_ms", {}).get("median"))]
    # MediaPipe at its default person-detection threshold and, where measured, at a low one (a peer at its best):
    # mediapipe_<size> and mediapipe_<size>_det<threshold>.
    for name in sorted((k for k in lsp if k.startswith("mediapipe_") and isinstance(lsp[k], dict)),
                       key=lambda k: (("lite", "full", "heavy").index(k.split("_")[1]), k)):
        r = lsp[name]
        size, _, det = name.removeprefix("mediapipe_").partition("_det")
        where = f" (detection >= {det})" if det else " (detection >= 0.5, its default)"
        rows.append((f"MediaPipe Pose {lsp.get('mediapipe_version', '')} {size}{where}", r["pck"],
                     r["ci95"], r["found"], r.get("ms_per_image")))
    lines = ["| model | PCK@0.2 | 95% CI | person found | ms/image |", "|---|---|---|---|---|"]
    for name, value, ci, found, ms in rows:
        lines.append(f"| {name} | {value:.1f} | {ci[0]:.1f}-{ci[1]:.1f} | {found}/1000 | "
                     f"{f'{ms:.1f}' if ms is not None else '-'} |")
    when = peer.get("machine", {}).get("date_utc", "")
    lines += ["", (f"MediaPipe rows: `{peer.get('command', 'benchmarks/bench_peer.py')}` ({when}), same 1000 "
                  "images and protocol (`rehab.accuracy`); a person MediaPipe misses counts as all wrong.")]
    return lines


def _presence_section(info, step: Step, presence: dict, report: dict, before: dict | None) -> list[str]:
    """How the presence output was trained and what it measures on held-out crops (export.presence_eval)."""
    training = info.training
    sources = training.get("data", {}).get("train", [])
    optim, train = training.get("optim", {}), training.get("train", {})
    tower = int(training.get("model", {}).get("presence_tower_blocks") or 0)
    hidden = int(training.get("model", {}).get("presence_hidden") or 64)
    finetune = step.rows
    seconds = sum(float(r["epoch_seconds"]) for r in finetune)
    crops = int(round(sum(float(r["images_per_s"]) * float(r["epoch_seconds"]) for r in finetune)))
    lines = ["", "## Presence output", "",
             (f"The file has a second output `{info.presence_output}` (N, 1): a logit, sigmoid = the probability "
              f"that a person is in the crop. Metadata: `rehab.presence_output` = \"{info.presence_output}\", "
              f"`rehab.presence_threshold` = \"{info.presence_threshold:g}\" (a person is present when the "
              "probability is at or above it)"
              + (f", `rehab.presence_acquire_threshold` = \"{info.presence_acquire_threshold:g}\" (a person not yet "
                 "tracked must reach it to be acquired; once tracked they stay while at the first threshold)"
                 if info.presence_acquire_threshold is not None else "")
              + ". `Pose.presence` carries the probability (flip test: the mean of the two logits)."), "",
             (f"Trained by `{step.config}`: the pose model gains a head"
              + (f" with a tower of its own, a trainable copy of the backbone's last {tower} stages fed by the frozen "
                 "earlier ones, then" if tower else " on")
              + f" global average + max pooling of the features, -> {hidden} -> 1,"
              + (" trained alone: the pose weights are frozen (`train.freeze_pose`), so the heatmaps, and the pose "
                 "accuracy, are exactly those of the starting checkpoint; head LR "
                 f"{float(optim.get('presence_head_lr') or optim.get('lr', 0)):g}, loss = BCE(presence)"
                 if train.get("freeze_pose") else
                 f" and is fine-tuned with BatchNorm statistics frozen, pose weights at LR {float(optim.get('lr', 0)):g}"
                 f" and the head at {float(optim.get('presence_head_lr') or optim.get('lr', 0)):g}, loss = heatmap "
                 f"MSE + {float(train.get('presence_loss_weight', 1)):g} x BCE(presence)")
              + f"; {len(finetune)} epochs, "
              f"{crops:,} crops, {seconds / 60:.1f} min on {cpu_name()} (2 threads, bf16 autocast)."),
             "", "| source | sample | share of an epoch | heatmap loss (while pose weights learn) |", "|---|---|---|---|"]
    total = sum(float(s_.get("ratio") or 0) for s_ in sources) or 1.0
    for src in sources:
        where = Path(src["path"]).name if src["kind"] in ("video", "mined") else f"{src['kind']} {src['split']}"
        extra = ", whole image" if src.get("crop") == "full_image" else (
            f", zoomed out x{src['zoom_out'][0]:g}-{src['zoom_out'][1]:g}" if src.get("zoom_out") else "")
        lines.append(f"| {src['kind']}: {where}{extra} | {src.get('sample', 'person')} | "
                     f"{100 * float(src.get('ratio') or 0) / total:.1f}% | "
                     f"{'yes' if src.get('heatmap_loss', True) and src.get('sample') == 'person' else 'zero targets' if src.get('sample') == 'background' else 'no (presence only)'} |")
    lines += ["", ("Person-free crops have all-zero heatmap targets with joint weight 1 and presence 0: background "
                   "crops of LSP/LSPET photos that touch no part of the annotated person's joint box (grown 15%), "
                   "synthetic images (flat colours including black and white, Gaussian and uniform static noise, "
                   "gradients, smooth blobs, shapes, optionally blurred), and crops of the room around the person in "
                   "pose2sim_balancing_cam02/cam03 (a hand-labelled box holds the person in every frame; a "
                   "bystander and an anatomical skeleton are kept out)"
                   + (", and hard crops mined where the previous model's own search-and-track loop found somebody "
                      "in person-free strips of LSPET training photos, cleared of unannotated people by MediaPipe "
                      "Pose and CenterFace (`python -m train mine-negatives`, train/hard_negatives.py)"
                      if any(src["kind"] == "mined" for src in sources) else "")
                   + ". Partial people are never drawn: background "
                   "crops keep clear of the person, person crops hold the whole person. Other, unannotated people "
                   "in LSP/LSPET photos can fall into background crops (label noise, accepted).")]
    t = presence["test"]
    v = presence["validation"]
    lines += ["", (f"Held-out accuracy, measured with `python -m export.presence_eval --model {Path(str(presence['model'])).name}`"
                   f" (threshold chosen on validation crops: {presence['rule']}):"), "",
              "| set | crops | persons | AUC | recall of persons | person-free rejected | accuracy |",
              "|---|---|---|---|---|---|---|"]
    for name, r in (("validation (last 500 LSPET, synthetic)", v), ("**test** (LSP test, synthetic, cam01)", t)):
        a = r["at_threshold"]
        lines.append(f"| {name} | {r['crops']} | {r['persons']} | {r['auc']:.5f} | {100 * a['recall']:.1f}% | "
                     f"{100 * a['specificity']:.1f}% | {100 * a['accuracy']:.1f}% |")
    if presence.get("validation_at_acquire") and info.presence_acquire_threshold is not None:
        a = presence["validation_at_acquire"]
        lines += ["", (f"Acquire threshold {presence['acquire_threshold']:g} ({presence['acquire_rule']}): validation "
                       f"recall of persons {100 * a['recall']:.1f}%, person-free rejected {100 * a['specificity']:.1f}%.")]
    lines += ["", f"Per subset of the test set at {presence['threshold']:g}:", "",
              "| subset | crops | called person | median presence |", "|---|---|---|---|"]
    for name, sub in t["subsets"].items():
        lines.append(f"| {name} ({'person' if sub['person'] else 'person-free'}) | {sub['crops']} | "
                     f"{100 * sub['called_person']:.1f}% | {sub['median_presence']:.3f} |")
    if before is not None:
        delta = report["pck"]["mean"] - before["pck"]["mean"]
        lines += ["", (f"Pose accuracy before and after (LSP test, 1000 images, whole image): PCK@0.2 "
                       f"{before['pck']['mean']:.1f} (the pose-only model) -> {report['pck']['mean']:.1f} "
                       f"({delta:+.1f}).")]
    return lines


def render(model: PoseModel, steps: list[Step], report: dict, command: str,
           flip: dict | None = None, peer: dict | None = None, curves_png: str | None = None,
           presence: dict | None = None, before: dict | None = None, ablations: list[Path] | None = None) -> str:
    """The generated block. ``steps``: the recipe's training steps in order; with ``presence``
    (export.presence_eval's JSON) the last presence step's section is added (``before``: the evaluation report of
    the model before it)."""
    info = model.info
    hours = sum(float(r["epoch_seconds"]) for st in steps for r in st.rows) / 3600
    pck = report["pck"]
    angles = report["angles_deg"]
    lat = report.get("latency_ms", {})
    target = peer_best(peer)
    lines = [
        f"# Model card: {model.path.name}",
        "",
        START,
        "",
        (f"- Network: Simple Baselines, backbone `{info.backbone}`, input {info.input_size[0]}x{info.input_size[1]} "
         f"RGB, heatmaps {info.heatmap_size[0]}x{info.heatmap_size[1]}, {info.num_joints} joints "
         f"({', '.join(info.joint_names)})."),
        (f"- Exported as {info.precision.upper()} ONNX with its preprocessing, skeleton and provenance in the file's "
         "metadata (`rehab.*` keys); the runtime reads them and hard-codes none."),
        f"- Recipe, in order ({hours:.1f} h of training in all, the logged epoch times; 2 threads, no GPU; this card "
        f"was made on {cpu_name()}, {platform.machine()}):",
    ]
    lines += [f"  {i}. {describe_step(st)}." for i, st in enumerate(steps, 1)]
    validated = [st for st in steps if st.validates_pose]
    if validated:
        lines.append("- Validation, per step: " + "; ".join(_validation_text(st) for st in validated) + ".")
    if curves_png:
        lines += ["", f"![learning curves]({curves_png})"]
    worst = {g: angles[g]["median_abs_deg"] for g in TARGET_ANGLE_DEG if g in angles}
    lines += [
        "",
        "## Targets",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
        (f"| PCK@0.2 (12 limb joints, LSP test) above MediaPipe Pose full at its best ({target[1]:.1f}, "
         f"`{target[0]}`, same images and protocol) | {pck['mean']:.1f}"
         + (f" ({flip['pck']['mean']:.1f} with flip test)" if flip else "") + f" | {_verdict(pck['mean'] > target[1])} |")
        if target else f"| PCK@0.2 (12 limb joints, LSP test) above MediaPipe Pose full at its best | {pck['mean']:.1f} "
                       "| not compared (no MediaPipe measurement given) |",
        f"| `PoseModel.predict` median, ONNX Runtime {info.precision.upper()}, 2 threads <= {TARGET_LATENCY_MS:g} ms | "
        + (f"{lat['median']:.1f} ms | {_verdict(lat['median'] <= TARGET_LATENCY_MS)} |"
           if lat else "not measured | - |"),
        ("| median angle error " + ", ".join(f"{g} <= {v:g} deg" for g, v in TARGET_ANGLE_DEG.items()) + " | "
         + ", ".join(f"{g} {v:.1f}" for g, v in worst.items()) + " deg | "
         + _verdict(all(worst[g] <= TARGET_ANGLE_DEG[g] for g in worst)) + " |"),
        "",
        f"## LSP test ({report['num_images']} images, whole image as input)",
        "",
        "Measured with:",
        "",
        f"    {command}",
        "",
        (f"PCK@{pck['alpha']} over the 12 limb joints (torso = annotated left shoulder to right hip, occluded joints "
        f"included): **{pck['mean']:.1f}** (95% bootstrap CI {pck['ci95'][0]:.1f}-{pck['ci95'][1]:.1f}). "
        f"PCKh@{report['pckh']['alpha']} (head segment neck to head top): {report['pckh']['mean']:.1f}."),
        "",
    ]
    lines += _pck_table(report, flip)
    lines += ["", "2-D joint-angle error, predicted vs annotated joints (all three joints annotated):", "",
              "| angle | median | mean | angles |", "|---|---|---|---|"]
    for group, err in angles.items():
        lines.append(f"| {group} | {err['median_abs_deg']:.1f} deg | {err['mean_abs_deg']:.1f} deg | {err['count']} |")
    if lat:
        lines += ["", (f"Latency of `PoseModel.predict` per image (preprocessing + ONNX Runtime + decoding, "
                      f"{', '.join(report['model']['providers'])}): median {lat['median']:.1f} ms, "
                      f"p90 {lat['p90']:.1f} ms, measured in the same run.")]
        if flip and flip.get("latency_ms"):
            lines[-1] += f" With the flip test: median {flip['latency_ms']['median']:.1f} ms."
    if peer:
        lines += ["", "## Side by side with MediaPipe Pose (same images, same protocol)", ""]
        lines += _peer_table(peer, report, info.precision)
    lines += _ablation_lines(ablations or [])
    presence_steps = [st for st in steps if st.presence_only]
    if presence and info.has_presence and presence_steps:
        lines += _presence_section(info, presence_steps[-1], presence, report, before)
    lines += ["", "## Licence", "", LICENCE_NOTE, "", END]
    return "\n".join(lines)


def merge(existing: str, generated: str) -> str:
    """Replace the generated block of ``existing`` (title line included) and keep the rest."""
    if START not in existing or END not in existing:
        return generated + "\n"
    _head, _, rest = existing.partition(START)
    _, _, tail = rest.partition(END)
    title, _, body = generated.partition(START)
    return title + START + body.split(END)[0] + END + tail


def _load_json(path: Path | None) -> dict | None:
    return json.loads(path.read_text()) if path else None


def _step(text: str) -> Step:
    config, sep, run = text.partition("=")
    if not sep or not config or not run:
        raise typer.BadParameter(f"--step wants CONFIG=RUN (a config file and its run folder or log.csv), got {text!r}")
    if not Path(config).is_file():
        raise typer.BadParameter(f"--step: no config file {config}")
    return Step(config, read_log(Path(run)))


def main(model: Path = typer.Option(..., help="The exported .onnx model."),
         step: list[str] = typer.Option(..., "--step", help="CONFIG=RUN, one per training step of the recipe, in "
                                        "order (RUN: the run folder or its log.csv)."),
         eval_json: Path = typer.Option(..., "--eval", help="Report written by `rehab evaluate --json`."),
         eval_flip: Path = typer.Option(None, "--eval-flip", help="The same with --flip."),
         peer: Path = typer.Option(None, help="benchmarks/results/peer_lsp.json (MediaPipe on LSP test)."),
         presence_eval: Path = typer.Option(None, help="export.presence_eval's JSON: adds the presence section "
                                                        "(of the last presence-only step)."),
         before: Path = typer.Option(None, help="`rehab evaluate --json` report of the model before the presence "
                                                "step (PCK before/after)."),
         ablations: list[Path] = typer.Option([], "--ablations", help="a folder of ablation reports "
                                              "(train study ablation --report-dir ...); repeatable."),
         out: Path = typer.Option(..., help="Where to write the card (markdown)."),
         command: str = typer.Option("rehab evaluate --root ../shared/data/lsp --split test --json EVAL.json",
                                     help="The evaluation command, quoted in the card.")) -> None:
    """Write a model card from measured numbers (and the learning curves next to it)."""
    report = json.loads(eval_json.read_text())
    steps = [_step(text) for text in step]
    peer_json = _load_json(peer)
    curves = out.with_name(Path(model).stem + "_curves.png")
    best = peer_best(peer_json)
    plot_curves(steps, curves, best[1] if best else None)
    card = render(PoseModel.load(model), steps, report, command, _load_json(eval_flip), peer_json, curves.name,
                  _load_json(presence_eval), _load_json(before), ablations)
    existing = out.read_text() if out.is_file() else ""
    out.write_text(merge(existing, card))
    typer.echo(f"wrote {out} and {curves}")


if __name__ == "__main__":
    typer.run(main)

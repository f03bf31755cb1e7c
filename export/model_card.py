"""Write the model card of an exported model from what was measured: its metadata, the training logs, an
evaluation report from `rehab evaluate --json` (optionally a flip-test one and the MediaPipe side-by-side of
benchmarks/bench_peer.py), and a learning-curve figure.

    python -m export.model_card --model rehab/models/default.onnx --run-dir RUN [--finetune-dir FT] \
        --eval EVAL.json [--eval-flip EVAL_FLIP.json] [--peer benchmarks/results/peer_lsp.json] \
        --out rehab/models/MODEL_CARD.md

Only the part between the GENERATED markers is rewritten; what an engineer wrote around it (status, trade-offs,
how to reproduce) is kept.
"""

from __future__ import annotations

import csv
import json
import platform
from pathlib import Path

import typer

from rehab.runtime.model import PoseModel

LICENCE_NOTE = (
    "Trained on LSP and LSPET (Flickr images released for research use only). The weights inherit that "
    "restriction: research and evaluation use; check the dataset terms before any commercial deployment.")
START, END = "<!-- generated:start -->", "<!-- generated:end -->"
# The default model's targets (issue: the embedded default model).
TARGET_PCK, TARGET_LATENCY_MS, TARGET_ANGLE_DEG = 87.0, 15.0, 5.0


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def read_log(run_dir: Path) -> list[dict]:
    log = Path(run_dir) / "log.csv"
    if not log.is_file():
        raise FileNotFoundError(f"no training log at {log}")
    with log.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{log} has no epoch rows")
    return rows


def plot_curves(main: list[dict], finetune: list[dict], out_png: Path) -> Path:
    """Validation PCK and train/val loss over epochs; fine-tuning epochs continue the x axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(main)
    ep_main = [int(r["epoch"]) for r in main]
    ep_ft = [n + int(r["epoch"]) for r in finetune]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot(ep_main, [float(r["val_pck"]) for r in main], "o-", ms=3, label="mixed LSPET + LSP train")
    if finetune and all(r.get("val_pck") for r in finetune):  # a presence step with frozen pose validates no PCK
        ax1.plot(ep_ft, [float(r["val_pck"]) for r in finetune], "s-", ms=3, label="fine-tune on LSP train")
    lrs = [float(r["lr"]) for r in main]
    for i in range(1, n):
        if lrs[i] != lrs[i - 1]:  # decays and warm restarts
            ax1.axvline(ep_main[i] - 0.5, color="grey", ls=":", lw=1)
            ax1.text(ep_main[i] - 0.3, ax1.get_ylim()[0] + 1, f"LR {lrs[i]:g}", fontsize=7, color="grey",
                     rotation=90, va="bottom")
    ax1.axhline(TARGET_PCK, color="red", ls="--", lw=1, label=f"target {TARGET_PCK:g}")
    ax1.set(xlabel="epoch", ylabel="PCK@0.2 (%)", title="validation: 300 LSP test images, whole image")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    for rows, xs, tag in ((main, ep_main, "mixed"), (finetune, ep_ft, "fine-tune")):
        if rows:
            ax2.plot(xs, [float(r.get("train_heatmap_loss") or r["train_loss"]) for r in rows], "-",
                     label=f"train loss ({tag})")
            if all(r.get("val_loss") for r in rows):
                ax2.plot(xs, [float(r["val_loss"]) for r in rows], "--", label=f"val loss ({tag})")
    ax2.set(xlabel="epoch", ylabel="heatmap MSE", title="loss")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


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


def _peer_table(peer: dict, ours: dict) -> list[str]:
    lsp = peer.get("lsp", {})
    rows = [("ours (this model, FP32)", ours["pck"]["mean"], ours["pck"]["ci95"], ours["num_images"],
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


PRESENCE_CONFIG = "train/configs/default_mnv2_presence_tower.yaml"


def _presence_section(info, finetune: list[dict], presence: dict, report: dict, before: dict | None) -> list[str]:
    """How the presence output was trained and what it measures on held-out crops (export.presence_eval)."""
    training = info.training
    sources = training.get("data", {}).get("train", [])
    optim, train = training.get("optim", {}), training.get("train", {})
    tower = int(training.get("model", {}).get("presence_tower_blocks") or 0)
    hidden = int(training.get("model", {}).get("presence_hidden") or 64)
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
             (f"Trained by `{PRESENCE_CONFIG}`: the pose model gains a head"
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


def render(model: PoseModel, main: list[dict], finetune: list[dict], report: dict, command: str,
           flip: dict | None = None, peer: dict | None = None, curves_png: str | None = None,
           presence: dict | None = None, before: dict | None = None) -> str:
    """The generated block; with ``presence`` (export.presence_eval's JSON) ``finetune`` is the presence step's
    log and a presence section is added (``before``: the pose-only model's evaluation report)."""
    info = model.info
    hours = sum(float(r["epoch_seconds"]) for r in main + finetune) / 3600
    best = max(main, key=lambda r: float(r["val_pck"]))
    pck = report["pck"]
    angles = report["angles_deg"]
    lat = report.get("latency_ms", {})
    worst_angle = max(angles[g]["median_abs_deg"] for g in ("knee", "elbow") if g in angles)
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
        f"- Recipe: `train/configs/default_mnv2.yaml` ({len(main)} epochs of LSPET 10,000 + LSP train 1,000, strong "
        "augmentation, Adam 1e-3 with x0.1 steps)" + (
            f", then `{PRESENCE_CONFIG}` ({len(finetune)} epochs training the presence output on person and "
            "person-free crops" + (", pose weights frozen)" if info.training.get("train", {}).get("freeze_pose") else
                                   f", pose weights at a constant {float(finetune[0]['lr']):g}, BatchNorm frozen)")
            if finetune and presence else
            f", then `train/configs/default_mnv2_finetune.yaml` ({len(finetune)} epochs on LSP train alone at a "
            f"constant {float(finetune[0]['lr']):g})" if finetune else "") +
        f"; {hours:.1f} h of training in all (the logged epoch times), 2 threads, no GPU; this card was made on "
        f"{cpu_name()} ({platform.machine()}).",
        f"- Best validation PCK@0.2 of the mixed-domain step: {float(best['val_pck']):.1f} at epoch {best['epoch']}"
        + (f"; best of the fine-tuning (the checkpoint it keeps): {max(float(r['val_pck']) for r in finetune):.1f}"
           if finetune and all(r.get("val_pck") for r in finetune) else "")
        + " (300 LSP test images, whole image letterboxed; these 300 are also in the 1000 of the test below, so "
          "the checkpoint choice saw part of the test set).",
    ]
    if curves_png:
        lines += ["", f"![learning curves]({curves_png})"]
    lines += [
        "",
        "## Targets",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
        f"| PCK@0.2 (12 limb joints, LSP test) >= {TARGET_PCK:g} | {pck['mean']:.1f}"
        + (f" ({flip['pck']['mean']:.1f} with flip test)" if flip else "") + f" | {_verdict(pck['mean'] >= TARGET_PCK)} |",
        f"| latency per crop, ONNX Runtime FP32, 2 threads <= {TARGET_LATENCY_MS:g} ms | "
        + (f"{lat['median']:.1f} ms (`PoseModel.predict`, median) | {_verdict(lat['median'] <= TARGET_LATENCY_MS)} |"
           if lat else "not measured | - |"),
        (f"| knee and elbow angle error, median <= {TARGET_ANGLE_DEG:g} deg | knee "
        f"{angles['knee']['median_abs_deg']:.1f}, elbow {angles['elbow']['median_abs_deg']:.1f} deg | "
        f"{_verdict(worst_angle <= TARGET_ANGLE_DEG)} |"),
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
        lines += _peer_table(peer, report)
    if presence and info.has_presence:
        lines += _presence_section(info, finetune, presence, report, before)
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


def main(model: Path = typer.Option(..., help="The exported .onnx model."),
         run_dir: Path = typer.Option(..., help="The training run folder (log.csv)."),
         finetune_dir: Path = typer.Option(None, help="The fine-tuning run folder (log.csv), if any."),
         eval_json: Path = typer.Option(..., "--eval", help="Report written by `rehab evaluate --json`."),
         eval_flip: Path = typer.Option(None, "--eval-flip", help="The same with --flip."),
         peer: Path = typer.Option(None, help="benchmarks/results/peer_lsp.json (MediaPipe on LSP test)."),
         presence_eval: Path = typer.Option(None, help="export.presence_eval's JSON: adds the presence section "
                                                        "(--finetune-dir is then the presence run)."),
         before: Path = typer.Option(None, help="`rehab evaluate --json` report of the model before the presence "
                                                "step (PCK before/after)."),
         out: Path = typer.Option(..., help="Where to write the card (markdown)."),
         command: str = typer.Option("rehab evaluate --root ../shared/data/lsp --split test --json EVAL.json",
                                     help="The evaluation command, quoted in the card.")) -> None:
    """Write a model card from measured numbers (and the learning curves next to it)."""
    report = json.loads(eval_json.read_text())
    main_rows = read_log(run_dir)
    ft_rows = read_log(finetune_dir) if finetune_dir else []
    curves = out.with_name(Path(model).stem + "_curves.png")
    plot_curves(main_rows, ft_rows, curves)
    card = render(PoseModel.load(model), main_rows, ft_rows, report, command, _load_json(eval_flip),
                  _load_json(peer), curves.name, _load_json(presence_eval), _load_json(before))
    existing = out.read_text() if out.is_file() else ""
    out.write_text(merge(existing, card))
    typer.echo(f"wrote {out} and {curves}")


if __name__ == "__main__":
    typer.run(main)

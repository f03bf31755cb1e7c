"""Rebuild the results section of benchmarks/README.md from the JSON files the benchmark scripts wrote.

    PYTHONPATH=. python benchmarks/make_table.py                       # reads benchmarks/results/*.json
    PYTHONPATH=. python benchmarks/make_table.py --results DIR --readme benchmarks/README.md --stdout

Only the text between the README's two marker lines is replaced; every figure comes from the JSON files, with
the machine and load average each was measured under and the command that produced it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
START, END = "<!-- results:start -->", "<!-- results:end -->"
PIPELINE_STAGES = ("decode", "roi", "pose", "smooth", "angles", "reps", "anonymize", "draw", "encode")

# The goals the table is read against (the benchmarks issue).
GOAL_LIVE_FPS = 45.0
GOAL_LIVE_FPS_RECORDING = 30.0
GOAL_PEER_SPEED_RATIO = 1.5
GOAL_PEAK_FRACTION = 0.80
GOAL_INT8_SPEEDUP = 2.0
GOAL_INT8_MAX_PCK_LOSS = 1.0
GOAL_THREADS = 2


def current_default() -> tuple[str, int]:
    """(precision, input side) of the embedded default model: rows measured with another file (an earlier default)
    are not "as shipped"."""
    sys.path.insert(0, str(BENCH_DIR.parent))
    from rehab.runtime.model import DEFAULT_MODEL_PATH, PoseModel

    info = PoseModel.load(DEFAULT_MODEL_PATH, providers="cpu", threads=1).info
    return info.precision, int(info.input_size[0])


def load(results: Path) -> dict[str, dict]:
    """The result files by stem; peer*.json files (speed and accuracy may be separate runs) merge into "peer"."""
    data = {p.stem: json.loads(p.read_text()) for p in sorted(results.glob("*.json"))}
    peers = [data.pop(k) for k in sorted(data) if k.startswith("peer")]
    if peers:
        merged: dict = {"runs": []}
        for r in peers:
            merged["runs"].append({"command": r["command"], "machine": r["machine"],
                                   "parts": [k for k in ("video", "lsp") if k in r]})
            for part in ("video", "lsp"):
                if part in r:
                    merged[part] = r[part]
                    merged.setdefault("model_sha256", {}).update(r.get("model_sha256", {}))
        data["peer"] = merged
    return data


def _load_text(m: dict) -> str:
    start, end = m.get("load_average_start", [None])[0], m.get("load_average_end", [None])[0]
    return f"load average {start:.2f} at start, {end:.2f} at end" if start is not None and end is not None else ""


def _ok(flag: bool) -> str:
    return "met" if flag else "**missed**"


def machine_line(m: dict) -> str:
    return (f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('memory_gib', '?')} GiB; {m.get('date_utc', '?')}; "
            f"{_load_text(m)}")


def inference_extra(runs: list[dict]) -> list[str]:
    """Rows of further inference runs (e.g. intra-op spinning on), each with its own peak and load."""
    lines = []
    for r in runs:
        m = r["machine"]
        lines += ["", f"`{r['command']}` — spinning {'on' if m.get('spinning') else 'off'}; {_load_text(m)}:", "",
                  "| model | variant | threads | batch-1 ms | batch-8 img/s | % of FP32 peak b1 / b8 (peak) |",
                  "|---|---|---|---|---|---|"]
        for row in r["rows"]:
            lines.append(f"| {row['model']} | {row['variant']} | {row['threads']} | {row['latency_ms']:.1f} | "
                         f"{row['throughput_img_s']:.1f} | {100 * row['efficiency_b1']:.0f}% / "
                         f"{100 * row['efficiency_b8']:.0f}% ({row['peak_gflops_per_s']:.0f}) |")
    return lines


def inference_section(r: dict) -> list[str]:
    m = r["machine"]
    peaks = r["peak_gflops_per_s"]
    lines = ["### 1. Model inference (ONNX Runtime, CPU)", "",
             f"`{r['command']}` — {machine_line(m)}; onnxruntime {m.get('onnxruntime', '?')}, "
             f"intra-op spinning {'on' if m.get('spinning') else 'off'}.", "",
             f"Measured FP32 GEMM peak ({r['gemm_n']}x{r['gemm_n']}, GFLOP/s): " + "; ".join(
                 f"{t} thread(s): " + ", ".join(f"{k} {v:.0f}" for k, v in g.items()) + f" -> **{peaks[t]:.0f}**"
                 for t, g in r["gemm_gflops_per_s"].items()) + ".", "",
             "| model | variant | threads | MB | GFLOP/img | batch-1 ms | batch-8 img/s | CPU ms/img (b8) | "
             "speed-up vs fp32 b1 / b8 | GFLOP/s b1 / b8 | % of FP32 peak b1 / b8 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        speed = "-" if row["variant"] == "fp32" else (f"{row['speedup_latency_vs_fp32']:.2f}x / "
                                                      f"{row['speedup_throughput_vs_fp32']:.2f}x")
        lines.append(f"| {row['model']} | {row['variant']} | {row['threads']} | {row['size_mb']:.1f} | "
                     f"{row['gflops_per_image']:.2f} | {row['latency_ms']:.1f} | {row['throughput_img_s']:.1f} | "
                     f"{row['cpu_ms_per_image']:.1f} | {speed} | {row['gflops_per_s_b1']:.0f} / {row['gflops_per_s_b8']:.0f} | "
                     f"{100 * row['efficiency_b1']:.0f}% / {100 * row['efficiency_b8']:.0f}% |")
    lines += ["", "GFLOP/img counts 2 x the multiply-adds of the Conv and ConvTranspose nodes of the FP32 file as "
              "exported; every variant is credited with that same work (INT8's integer peak is higher, so its "
              "percentage can exceed 100%). Speed-ups are against the fp32 file as exported; *_subpixel rows are the "
              "same weights with the deconvolutions rewritten by benchmarks/subpixel_deconv.py."]
    return lines


def _pipeline_config(r: dict) -> str:
    variant = r.get("variant", "fp32")
    # "fp32" is the file as exported, whatever its precision: rows name the file's precision and input size, so
    # rows measured with different default models read apart.
    model = f"{r.get('precision', 'fp32')} {r['model_input'][0]} px" + ("" if variant == "fp32" else f", {variant}")
    parts = [model, f"face detector {r['face_detector']}"
             + (f"/{r['face_detector_every_frames']}" if r["face_detector"] != "off" else ""),
             "decode thread" if r.get("prefetch") else "decode in loop",
             f"{r['threads']} thr" + (" spinning" if r.get("allow_spinning") else "")
             + (f", cv {r['cv_threads']} thr" if r.get("cv_threads", r["threads"]) != r["threads"] else "")]
    return ", ".join(parts)


def _record_mode(r: dict) -> str:
    return r.get("record_mode", "every frame" if r["record"] else "off")


def is_shipped(r: dict, default: tuple[str, int] | None = None) -> bool:
    """The configuration the product runs: the default model (``default``: its precision and input side) as
    exported, CenterFace on the live worker, frames decoded on another thread (the video page's and batch's reader
    thread; streamlit-webrtc's on the live page), and when recording, the live page's recorder (15 fps)."""
    if default is not None and (r.get("precision", "fp32"), int(r["model_input"][0])) != tuple(default):
        return False
    return (r.get("variant", "fp32") == "fp32" and r["face_detector"] == "background" and bool(r.get("prefetch"))
            and r.get("face_detector_model") == "centerface" and r["threads"] == GOAL_THREADS
            and not r.get("allow_spinning") and r.get("cv_threads", r["threads"]) == GOAL_THREADS
            and _record_mode(r) in ("off", "live 15 fps"))


def pipeline_section(runs: list[dict]) -> list[str]:
    if not runs:
        return []
    lines = ["### 2. End to end: the full pipeline on real clips", "",
             "| clip | size | recording | configuration | **FPS** | process-only FPS | CPU ms/frame | " +
             " | ".join(f"{s} ms" for s in PIPELINE_STAGES) + " | load avg |",
             "|---|---|---|---|---|---|---|" + "---|" * len(PIPELINE_STAGES) + "---|"]
    for r in runs:
        stages = " | ".join(f"{r['stages_ms'][s]['mean']:.1f}" if s in r["stages_ms"] else "-" for s in PIPELINE_STAGES)
        lines.append(f"| {r['clip']} ({r['clip_file']}) | {r['size'][0]}x{r['size'][1]} | "
                     f"{_record_mode(r)} | {_pipeline_config(r)} | **{r['fps']:.1f}** | "
                     f"{r['fps_process_only']:.1f} | {r['cpu_ms_per_frame']:.1f} | {stages} | "
                     f"{r['machine']['load_average_start'][0]:.2f} |")
    first = runs[0]
    lines += ["", f"{first['frames']}+ timed frames per row after {first['warmup']} warm-up. Configuration: the "
              "model file's precision and input side (rehab/models/default.onnx as exported unless a variant made "
              "from it is named: int8_subpixel etc.; 192 px rows were measured with the v1 default, 256 px ones "
              "with v2b INT8), face detector mode/every N frames (background = the live page's setting), where "
              "decoding runs, ONNX Runtime/OpenCV/x264 threads. Stage columns are means per frame (decode = PyAV; "
              "with a decode thread it is the wait for the next frame; encode = libx264 veryfast CRF 23: 'every frame' "
              "encodes each annotated frame at the clip's rate on the configured threads, as batch processing does; "
              "'live 15 fps' writes as the live page's recorder does, 15 fps by the frames' timestamps on 1 x264 "
              "thread). CPU ms/frame is the process's CPU time over all its threads, including the "
              "background face detector. " + machine_line(first["machine"]) + ".", "", "Commands:", ""]
    lines += [f"- `{r['command']}`" for r in runs]
    return lines


def training_section(r: dict) -> list[str]:
    lines = ["### 3. Training throughput (CPU)", "", f"`{r['command']}` — {machine_line(r['machine'])}; "
             f"torch {r['machine'].get('torch', '?')}.", "",
             "| preset | precision | input | batch | channels_last | threads | step s | **img/s** | data share |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        w, h = row["input_size"]
        lines.append(f"| {row['preset']} ({row['backbone']}) | {row['precision']} | {w}x{h} | {row['batch_size']} | "
                     f"{'yes' if row['channels_last'] else 'no'} | {row['threads']} | {row['step_s']:.2f} | "
                     f"**{row['images_per_s']:.1f}** | {100 * row['data_fraction']:.1f}% |")
    lines += ["", "Forward + backward + Adam on a batch in memory (train/throughput.py); the data share is the "
              "single-process cost of building a batch next to the step."]
    return lines


def peer_section(r: dict) -> list[str]:
    lines = ["### 4. Peer: MediaPipe Pose", ""]
    for run in r["runs"]:
        what = " and ".join({"video": "speed", "lsp": "LSP accuracy"}[p] for p in run["parts"])
        lines.append(f"- {what}: `{run['command']}` — {machine_line(run['machine'])}.")
    lines.append("")
    lsp = r.get("lsp")
    if lsp:
        lines += ["LSP test (im1001-im2000), full image in, PCK@0.2 over the 12 limb joints, torso = annotated left "
                  "shoulder to right hip, occluded joints included, a missed person all wrong "
                  f"(MediaPipe {lsp.get('mediapipe_version', '?')}):", "",
                  "| model | PCK@0.2 | 95% CI | person found | ms/image (median) |", "|---|---|---|---|---|"]
        for name, row in lsp.items():
            if not isinstance(row, dict):
                continue
            lines.append(f"| {name} | **{row['pck']:.1f}** | {row['ci95'][0]:.1f}-{row['ci95'][1]:.1f} | "
                         f"{row['found']}/{row['images']} | {row['ms_per_image']:.1f} |")
        lines.append("")
    video = r.get("video")
    key = shipped_key(r)
    if video:
        lines += ["Speed on the same clips (tracking as in a live stream; ours = roi + pose + smooth stages, "
                  "MediaPipe = Pose.process with static_image_mode=False; decoding apart; CPU ms/frame is the process's CPU "
                  "time during the model call, decoder threads running ahead included; fastest of the alternating "
                  "passes):", "",
                  "| clip | model | **FPS** | ms/frame (median) | CPU ms/frame | FPS with decode | person found | "
                  f"FPS {key} / this |", "|---|---|---|---|---|---|---|---|"]
        for label, clip in video.items():
            ours = clip["rows"].get(key)
            for name, row in clip["rows"].items():
                ratio = f"{ours['fps_process'] / row['fps_process']:.2f}x" if ours and name.startswith("mediapipe") else "-"
                lines.append(f"| {label} ({row['size'][0]}x{row['size'][1]}) | {name} | **{row['fps_process']:.1f}** | "
                             f"{row['process_ms_median']:.1f} | {row['cpu_ms_per_frame']:.1f} | "
                             f"{row['fps_with_decode']:.1f} | {row['found']}/{row['frames']} | {ratio} |")
    return lines


def shipped_key(peer: dict) -> str:
    """The peer run's row of the shipped file: the "ours_*" file whose hash is the embedded default's, else
    ours_fp32 (runs from before hashes were kept)."""
    sys.path.insert(0, str(BENCH_DIR.parent))
    from rehab.core.files import sha256_file
    from rehab.runtime.model import DEFAULT_MODEL_PATH

    digest = sha256_file(DEFAULT_MODEL_PATH)[:16]
    return next((k for k, v in peer.get("model_sha256", {}).items() if v == digest), "ours_fp32")


def goals_section(data: dict[str, dict], pipelines: list[dict], default: tuple[str, int] | None = None) -> list[str]:
    lines = ["### Goals", "", "| goal | measured | verdict |", "|---|---|---|"]
    for record, goal in ((False, GOAL_LIVE_FPS), (True, GOAL_LIVE_FPS_RECORDING)):
        rows = [r for r in pipelines if r["clip"] == "720p" and r["record"] == record]
        for r in sorted(rows, key=lambda r: not is_shipped(r, default)):
            what = "as shipped" if is_shipped(r, default) else _pipeline_config(r)
            if record:
                what += f"; recording {_record_mode(r)}"
            lines.append(f"| live 720p pipeline >= {goal:.0f} FPS on 2 cores, {'with' if record else 'without'} "
                         f"recording ({what}) | {r['fps']:.1f} FPS | {_ok(r['fps'] >= goal)} |")
    peer = data.get("peer", {})
    lsp, video = peer.get("lsp", {}), peer.get("video", {})
    key = shipped_key(peer) if peer else "ours_fp32"
    for label, clip in video.items():
        ours, theirs = clip["rows"].get(key), clip["rows"].get("mediapipe_full")
        if ours and theirs and lsp.get(key) and lsp.get("mediapipe_full"):
            ratio = ours["fps_process"] / theirs["fps_process"]
            pck_ours, pck_theirs = lsp[key]["pck"], lsp["mediapipe_full"]["pck"]
            lines.append(f"| >= {GOAL_PEER_SPEED_RATIO}x MediaPipe full's FPS at higher PCK ({label}, {key}) | "
                         f"{ratio:.2f}x FPS; PCK@0.2 {pck_ours:.1f} vs {pck_theirs:.1f} | "
                         f"speed {_ok(ratio >= GOAL_PEER_SPEED_RATIO)}, accuracy {_ok(pck_ours > pck_theirs)} |")
    for peer_name in ("mediapipe_full_det0.1", "mediapipe_heavy_det0.1"):
        if lsp.get(key) and lsp.get(peer_name):
            ours_pck, peer_pck = lsp[key]["pck"], lsp[peer_name]["pck"]
            lines.append(f"| LSP test PCK@0.2 ({key}) above {peer_name.split('_')[1]} MediaPipe at its best (person detection "
                         f">= 0.1, {lsp[peer_name]['found']}/{lsp[peer_name]['images']} found) | "
                         f"{ours_pck:.1f} vs {peer_pck:.1f} | {_ok(ours_pck > peer_pck)} |")
    inference = data.get("inference")
    runs = [r for k, r in sorted(data.items()) if k == "inference" or k.startswith("inference_")]
    for run in runs:
        spin = "spinning on" if run["machine"].get("spinning") else "spinning off"
        for row in run["rows"]:
            if row["model"] == "resnet50_paper" and row["variant"] == "fp32":
                lines.append(f"| ResNet-50 preset >= {100 * GOAL_PEAK_FRACTION:.0f}% of measured FP32 peak "
                             f"({row['threads']} thread(s), {spin}; batch 8 / batch 1) | {100 * row['efficiency_b8']:.0f}% / "
                             f"{100 * row['efficiency_b1']:.0f}% of {row['peak_gflops_per_s']:.0f} GFLOP/s | "
                             f"{_ok(row['efficiency_b8'] >= GOAL_PEAK_FRACTION)} (batch 8) |")
    if inference:
        for row in inference["rows"]:
            if not row["variant"].startswith("int8"):
                continue
            speed = min(row["speedup_latency_vs_fp32"], row["speedup_throughput_vs_fp32"])
            accuracy = ""
            verdict = f"speed {_ok(speed >= GOAL_INT8_SPEEDUP)}"
            row_loss = None
            # The loss is the peer run's, so only for an inference run of the same FP32 file (its INT8 copy's
            # name carries the FP32 file's hash).
            same_file = peer.get("model_sha256", {}).get("ours_fp32", "?") in str(
                inference.get("files", {}).get("default", {}).get(row["variant"], ""))
            if row["model"] == "default" and same_file and lsp.get("ours_fp32") and lsp.get(f"ours_{row['variant']}"):
                row_loss = lsp["ours_fp32"]["pck"] - lsp[f"ours_{row['variant']}"]["pck"]
            if row_loss is not None:
                accuracy = f"; PCK@0.2 loss {row_loss:+.2f} points"
                verdict += f", accuracy {_ok(row_loss <= GOAL_INT8_MAX_PCK_LOSS)}"
            same = ""
            if row.get("same_graph_fp32", "fp32") != "fp32":
                same = (f" ({row['speedup_latency_vs_same_graph_fp32']:.2f}x / "
                        f"{row['speedup_throughput_vs_same_graph_fp32']:.2f}x vs {row['same_graph_fp32']})")
            lines.append(f"| INT8 >= {GOAL_INT8_SPEEDUP:.0f}x FP32 speed, <= {GOAL_INT8_MAX_PCK_LOSS:.0f} PCK point lost "
                         f"({row['model']} {row['variant']}, {row['threads']} thread(s)) | "
                         f"{row['speedup_latency_vs_fp32']:.2f}x batch 1, {row['speedup_throughput_vs_fp32']:.2f}x batch 8"
                         f"{same}{accuracy} | {verdict} |")
    return lines


def presence_section(r: dict) -> list[str]:
    """Phantom skeletons, persons found and acquisition delay (bench_presence.py), as shipped vs presence ignored."""
    lines = [f"### Nobody there, somebody entering ({machine_line(r['machine'])})", "",
             f"`{r.get('command', 'python benchmarks/bench_presence.py')}`; truth: tests/presence_clips.py "
             "(hand labels; clips built from real footage with person-free stretches).", "",
             "| variant | clip | person found (present frames) | skeleton drawn (person-free frames) | "
             "acquisition (frames after entry) | pose stage ms: searching / tracked |",
             "|---|---|---|---|---|---|"]
    def ms(v) -> str:
        return "-" if v is None else f"{v:.1f}"

    for row in r["rows"]:
        absent = f"{row['phantom_rate']:.1%} of {row['absent_frames']}" if row["absent_frames"] else "-"
        acq = ", ".join(str(a) for a in row["acquisition_frames"]) or "-"
        off = row.get("skeleton_off_people_frames")
        clip = row["clip"] + (f" (off every person on frames {off})" if off else "")
        lines.append(f"| {row['variant']} | {clip} | {row['found_rate']:.1%} of {row['present_frames']} | {absent} | "
                     f"{acq} | {ms(row['search_ms'])} / {ms(row['track_ms'])} |")
    return lines


def render(data: dict[str, dict], default: tuple[str, int] | None = None) -> str:
    """The README section; ``default`` (precision, input side) names the shipped model's rows."""
    pipelines = sorted((r for k, r in data.items() if k.startswith("pipeline")),
                       key=lambda r: (r["size"][0] * r["size"][1], r["clip"], r["record"], not is_shipped(r, default),
                                      _pipeline_config(r)))
    parts: list[list[str]] = []
    if data:
        parts.append(goals_section(data, pipelines, default))
    if "inference" in data:
        parts.append(inference_section(data["inference"])
                     + inference_extra([r for k, r in data.items() if k.startswith("inference_")]))
    parts.append(pipeline_section(pipelines))
    if "training" in data:
        parts.append(training_section(data["training"]))
    if "peer" in data:
        parts.append(peer_section(data["peer"]))
    if "presence" in data:
        parts.append(presence_section(data["presence"]))
    return "\n\n".join("\n".join(p) for p in parts if p) or "(no results yet: run benchmarks/run_all.sh)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=BENCH_DIR / "results")
    p.add_argument("--readme", type=Path, default=BENCH_DIR / "README.md")
    p.add_argument("--stdout", action="store_true", help="print the section instead of writing the README")
    args = p.parse_args(argv)
    section = render(load(args.results), current_default())
    if args.stdout:
        print(section)
        return 0
    text = args.readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{args.readme} lacks the marker lines {START} and {END}")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    args.readme.write_text(f"{head}{START}\n{section}\n{END}{tail}")
    print(f"updated {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

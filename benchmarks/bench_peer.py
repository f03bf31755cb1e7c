"""Our default model against MediaPipe Pose (lite, full, heavy): LSP test PCK@0.2 and speed on the same clips.

    bash benchmarks/setup_mediapipe.sh                  # once: MediaPipe's own venv in /work/mp-venv
    PYTHONPATH=. python benchmarks/bench_peer.py --json benchmarks/results/peer.json
    PYTHONPATH=. python benchmarks/bench_peer.py --skip-video --lsp-limit 100     # a quick accuracy check

Accuracy (the default-model issue's protocol): LSP test im1001-im2000, the full image as input (LSP images are
person crops), PCK@0.2 over the 12 limb joints, torso = annotated left shoulder to right hip, occluded joints
included, a missed person counting as all wrong. Ours goes through rehab.accuracy.evaluate_pose_model, the
code behind `rehab evaluate --root ../shared/data/lsp --split test`, in FP32 and INT8 (the INT8 file made as
`rehab export --int8` makes it). MediaPipe runs in its own venv (benchmarks/mediapipe_runner.py, one image
at a time, static_image_mode) and its landmarks are scored here by the same rehab.accuracy functions:
shoulders 11/12, elbows 13/14, wrists 15/16, hips 23/24, knees 25/26, ankles 27/28 (left/right are the
person's in both). MediaPipe runs at two person-detection thresholds in one run: its default (0.5) and at its
best on LSP (0.1, far fewer missed people); rows of the low threshold are named ``mediapipe_<model>_det0.1``.

Speed: each clip's frames are decoded in the loop and each model tracks the person as in a live stream: ours
is the Pipeline's roi + pose + smooth stages (anonymisation and drawing off), MediaPipe is Pose.process in
tracking mode (static_image_mode=False), alternating over --repeats passes (the fastest pass of each is
kept). FPS counts that work only, decoding is reported apart; CPU ms per
frame is each process's CPU time (all threads). Our ONNX Runtime uses --threads intra-op threads; MediaPipe
runs its own graph threads.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import (
    CLIPS,
    DEFAULT_MODEL,
    MP_VENV,
    SHARED_DIR,
    WORK_DIR,
    command_line,
    finish,
    int8_variant,
    machine,
    prepare_clip,
    sha256_file,
    subpixel_variant,
)

logger = logging.getLogger(__name__)

RUNNER = Path(__file__).resolve().parent / "mediapipe_runner.py"
# MediaPipe Pose landmark index of each LSP limb joint (MediaPipe's left/right are the person's, like LSP's).
MEDIAPIPE_INDEX = {
    "left_shoulder": 11, "right_shoulder": 12, "left_elbow": 13, "right_elbow": 14, "left_wrist": 15,
    "right_wrist": 16, "left_hip": 23, "right_hip": 24, "left_knee": 25, "right_knee": 26, "left_ankle": 27,
    "right_ankle": 28,
}
MEDIAPIPE_MODELS = {0: "lite", 1: "full", 2: "heavy"}
# Person-detection thresholds MediaPipe is scored at: its default, and its best on LSP (a peer at its best).
MEDIAPIPE_DEFAULT_DETECTION = 0.5
MEDIAPIPE_BEST_DETECTION = 0.1
DEFAULT_VIDEO_CLIPS = ("720p", "1080p")
N_BOOT = 1000


def mediapipe_python(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.is_file():
        raise FileNotFoundError(f"MediaPipe venv not found at {venv}: run `bash benchmarks/setup_mediapipe.sh {venv}` "
                                "or pass --mp-venv")
    return python


def run_mediapipe(venv: Path, args: list[str]) -> dict:
    """Run the MediaPipe runner in its venv and return its JSON."""
    with tempfile.TemporaryDirectory(prefix="bench-mp-") as tmp:
        out = Path(tmp) / "out.json"
        cmd = [str(mediapipe_python(venv)), str(RUNNER), *args, "--out", str(out)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"MediaPipe runner failed ({' '.join(cmd)}):\n{done.stderr[-3000:]}")
        return json.loads(out.read_text())


# ----------------------------------------------------------------------------------------------
# accuracy


def score_mediapipe(run: dict, records) -> dict:
    """PCK@0.2 of one MediaPipe run, scored like ours (rehab.accuracy.pck_torso + bootstrap CI)."""
    from rehab.core.metrics import bootstrap_ci
    from rehab.accuracy import Predictions, pck_torso

    joint_set = records[0].joint_set
    n, k = len(records), joint_set.num_joints
    keypoints = np.full((n, k, 2), np.nan)
    scores = np.zeros((n, k), np.float32)
    # A missed person keeps NaN everywhere: every one of its joints is scored wrong.
    for i, landmarks in enumerate(run["landmarks_px"]):
        if landmarks is None:
            continue
        lm = np.asarray(landmarks, dtype=np.float64)
        for name, index in MEDIAPIPE_INDEX.items():
            keypoints[i, joint_set.index(name)] = lm[index, :2]
            scores[i, joint_set.index(name)] = lm[index, 2]
    pred = Predictions(keypoints, scores, np.stack([r.joints_px for r in records]),
                       np.stack([r.annotated for r in records]), np.full((n, 4), np.nan), joint_set.joints)
    result = pck_torso(pred, joint_set)
    _, low, high = bootstrap_ci(result.included_correct(), result.included_visible(), n_boot=N_BOOT)
    return {"pck": float(result.mean), "ci95": [low, high], "images": n, "found": run["found"],
            "ms_per_image": run["ms_per_image"]["median"], "cpu_ms_per_image": run["cpu_ms_per_image"]["median"],
            "per_joint": {j: float(v) for j, v, inc in zip(joint_set.joints, result.per_joint, result.included) if inc}}


def mediapipe_row_name(run: dict) -> str:
    confidence = run.get("min_detection_confidence", MEDIAPIPE_DEFAULT_DETECTION)
    suffix = "" if confidence == MEDIAPIPE_DEFAULT_DETECTION else f"_det{confidence:g}"
    return f"mediapipe_{run['model']}{suffix}"


def lsp_accuracy(models: dict[str, Path], venv: Path, lsp_root: Path, limit: int | None, threads: int) -> dict:
    from rehab.pose_annotations import read_lsp
    from rehab.accuracy import evaluate_pose_model
    from rehab.runtime.model import PoseModel

    records = read_lsp(lsp_root, "test")[:limit]
    out: dict[str, dict] = {}
    for name, path in models.items():
        model = PoseModel.load(path, providers="cpu", threads=threads)
        rep = evaluate_pose_model(model, records, n_boot=N_BOOT, progress=False, dataset="lsp:test")
        out[name] = {"pck": rep["pck"]["mean"], "ci95": rep["pck"]["ci95"], "images": rep["num_images"],
                     "found": rep["num_images"], "ms_per_image": rep["latency_ms"]["median"],
                     "flip_test": rep["flip_test"], "model": path.name, "precision": model.info.precision,
                     "per_joint": {j: rep["pck"]["per_joint"][j] for j in rep["pck"]["joints_in_mean"]}}
        print(f"ours {name}: PCK@0.2 {out[name]['pck']:.2f} ({len(records)} images)", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp:
        listing = Path(tmp) / "images.json"
        listing.write_text(json.dumps({"images": [str(r.image_path) for r in records]}))
        mp = run_mediapipe(venv, ["images", "--list", str(listing), "--complexity", *map(str, MEDIAPIPE_MODELS),
                                  "--min-detection-confidence", str(MEDIAPIPE_DEFAULT_DETECTION),
                                  str(MEDIAPIPE_BEST_DETECTION)])
    for run in mp["runs"]:
        name = mediapipe_row_name(run)
        out[name] = score_mediapipe(run, records)
        print(f"{name}: PCK@0.2 {out[name]['pck']:.2f}, person found in {run['found']}/{run['images']}", flush=True)
    out["mediapipe_version"] = mp["mediapipe"]
    return out


# ----------------------------------------------------------------------------------------------
# speed


def ours_tracking_speed(model_path: Path, clip: Path, threads: int, warmup: int) -> dict:
    """FPS of roi + pose + smooth over a clip (decode timed apart), as the live pipeline runs them."""
    from rehab.pipeline import Pipeline
    from rehab.runtime.model import PoseModel
    from rehab.runtime.video import VideoReader
    from rehab.settings import RuntimeSettings

    model = PoseModel.load(model_path, providers="cpu", threads=threads)
    settings = RuntimeSettings().with_overrides(anonymize={"enabled": False}, draw={"enabled": False})
    logging.getLogger("rehab.pipeline").setLevel(logging.ERROR)  # the "anonymisation is OFF" warning is intended
    pipe = Pipeline(model, settings)
    decode_ms, work_ms, cpu_s, found = [], [], 0.0, 0
    with VideoReader(clip) as reader:
        it = iter(reader)
        index = 0
        while True:
            t0 = time.perf_counter()
            try:
                frame, t = next(it)
            except StopIteration:
                break
            decode = (time.perf_counter() - t0) * 1e3
            c0 = time.process_time()
            r = pipe.process(frame, t)
            c1 = time.process_time()
            if index >= warmup:
                decode_ms.append(decode)
                work_ms.append(r.timings_ms["roi"] + r.timings_ms["pose"] + r.timings_ms["smooth"])
                cpu_s += c1 - c0
                found += r.person_found
            index += 1
    n = len(work_ms)
    return {"model": model_path.name, "precision": model.info.precision, "frames": n, "found": found,
            "size": [frame.shape[1], frame.shape[0]], "fps_process": n / (sum(work_ms) / 1e3),
            "process_ms_median": float(np.median(work_ms)), "decode_ms_median": float(np.median(decode_ms)),
            "fps_with_decode": n / ((sum(work_ms) + sum(decode_ms)) / 1e3), "cpu_ms_per_frame": cpu_s * 1e3 / n,
            "threads": threads}


def video_speed(models: dict[str, Path], venv: Path, clips: list[str], threads: int, warmup: int,
                repeats: int) -> dict:
    """Per clip and model, the fastest of ``repeats`` alternating passes (others' load only slows a pass)."""
    out: dict[str, dict] = {}
    for label in clips:
        clip = prepare_clip(label)
        rows: dict[str, dict] = {}

        def keep(name: str, row: dict) -> None:
            if name not in rows or row["fps_process"] > rows[name]["fps_process"]:
                rows[name] = {**row, "passes": rows.get(name, {}).get("passes", 0) + 1}
            else:
                rows[name]["passes"] += 1

        for _ in range(repeats):
            for name, path in models.items():
                keep(name, ours_tracking_speed(path, clip, threads, warmup))
            mp = run_mediapipe(venv, ["video", "--clip", str(clip), "--warmup", str(warmup),
                                      "--complexity", *map(str, MEDIAPIPE_MODELS)])
            for run in mp["runs"]:
                keep(f"mediapipe_{run['model']}", {
                    "model": f"pose_landmark_{run['model']}", "frames": run["frames"], "found": run["found"],
                    "size": run["size"], "fps_process": run["fps_process"],
                    "process_ms_median": run["process_ms"]["median"], "decode_ms_median": run["decode_ms"]["median"],
                    "fps_with_decode": run["fps_with_decode"], "cpu_ms_per_frame": run["cpu_ms_per_frame"]})
        out[label] = {"clip": clip.name, "rows": rows}
        print(f"{label}: " + ", ".join(f"{k} {v['fps_process']:.1f} FPS" for k, v in rows.items()), flush=True)
    return out


def our_files(model: Path | None, int8_model: Path | None) -> tuple[Path, Path | None]:
    """(FP32 file, INT8 file or None to quantise the FP32 one here). An INT8 default ships beside its FP32 twin,
    and the shipped INT8 file (its own calibration) is what is compared, not a copy quantised again."""
    from rehab.runtime.model import PoseModel

    if model is None:
        model = DEFAULT_MODEL
        if PoseModel.load(model, providers="cpu").info.precision == "int8":
            int8_model = int8_model or model
            model = model.with_name("default_fp32.onnx")
    for path, want in ((model, "fp32"), (int8_model, "int8")):
        if path is not None and (got := PoseModel.load(path, providers="cpu").info.precision) != want:
            raise SystemExit(f"{path} is a {got} file; it was given as our {want} model")
    return model, int8_model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=None,
                   help="our FP32 model (default: the embedded one, or its FP32 twin default_fp32.onnx when the "
                        "embedded one is INT8)")
    p.add_argument("--int8-model", type=Path, default=None,
                   help="our INT8 file (default: the embedded one when it is INT8, else --model quantised as "
                        "`rehab export --int8` quantises)")
    p.add_argument("--mp-venv", type=Path, default=MP_VENV, help="MediaPipe's venv (setup_mediapipe.sh)")
    p.add_argument("--lsp-root", type=Path, default=SHARED_DIR / "data" / "lsp")
    p.add_argument("--lsp-limit", type=int, default=None, help="only the first N test images (quick checks)")
    p.add_argument("--clips", nargs="+", default=list(DEFAULT_VIDEO_CLIPS), choices=list(CLIPS))
    p.add_argument("--threads", type=int, default=2, help="our ONNX Runtime intra-op threads")
    p.add_argument("--warmup", type=int, default=5, help="video frames before timing starts")
    p.add_argument("--repeats", type=int, default=2, help="alternating passes per clip; the fastest is kept")
    p.add_argument("--subpixel", action="store_true",
                   help="also our model with its deconvolutions in sub-pixel form (FP32 and INT8)")
    p.add_argument("--skip-lsp", action="store_true")
    p.add_argument("--skip-video", action="store_true")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    fp32, int8 = our_files(args.model, args.int8_model)
    models = {"ours_fp32": fp32, "ours_int8": int8 or int8_variant(fp32, WORK_DIR)}
    if args.subpixel:
        models["ours_fp32_subpixel"] = subpixel_variant(fp32, WORK_DIR)
        models["ours_int8_subpixel"] = int8_variant(models["ours_fp32_subpixel"], WORK_DIR)
    mediapipe_python(args.mp_venv)
    result: dict = {"benchmark": "peer", "command": command_line(), "machine": machine(threads=args.threads),
                    "model_sha256": {k: sha256_file(v)[:16] for k, v in models.items()}}
    if not args.skip_video:
        result["video"] = video_speed(models, args.mp_venv, args.clips, args.threads, args.warmup, args.repeats)
    if not args.skip_lsp:
        result["lsp"] = lsp_accuracy(models, args.mp_venv, args.lsp_root, args.lsp_limit, args.threads)
    finish(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

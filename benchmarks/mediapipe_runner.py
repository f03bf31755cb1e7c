"""MediaPipe Pose as a peer: runs INSIDE MediaPipe's own venv (see setup_mediapipe.sh) and writes raw JSON.

It imports neither rehab nor the project's venv packages (MediaPipe needs numpy<2 and protobuf<5): it only
runs the model and records landmarks and timings. benchmarks/bench_peer.py, in the project's venv, calls it
and scores the landmarks with rehab.accuracy, so both models are judged by one protocol.

    /work/mp-venv/bin/python benchmarks/mediapipe_runner.py images --list LIST.json --out OUT.json
    /work/mp-venv/bin/python benchmarks/mediapipe_runner.py video --clip CLIP.mp4 --out OUT.json

images: each listed image alone (static_image_mode=True: person detection + landmarks on every image), the
full image as input. video: a clip in tracking mode (static_image_mode=False, MediaPipe's video setting:
the detector runs only when the tracked pose is lost, landmarks are smoothed), as a live camera would use it.
Landmarks are written in 0-based pixel coordinates with their visibility, or null where no person was found.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

COMPLEXITY_NAMES = {0: "lite", 1: "full", 2: "heavy"}
NUM_LANDMARKS = 33
# MediaPipe normalises continuous image coordinates (pixel edges at integers); the project uses 0-based pixel
# centres, half a pixel apart.
PIXEL_CENTRE_OFFSET = 0.5


def _landmarks_px(result, width: int, height: int) -> list[list[float]] | None:
    if result.pose_landmarks is None:
        return None
    return [[lm.x * width - PIXEL_CENTRE_OFFSET, lm.y * height - PIXEL_CENTRE_OFFSET, lm.visibility]
            for lm in result.pose_landmarks.landmark]


def _summary(values_ms: list[float]) -> dict:
    if not values_ms:
        return {}
    return {"median": statistics.median(values_ms), "mean": statistics.fmean(values_ms),
            "p95": float(np.percentile(values_ms, 95)), "max": max(values_ms)}


# MediaPipe's own default person-detection confidence; a peer is also compared at its best, a low threshold
# that misses far fewer people on LSP (0.1: 31-38 misses in 1000 images instead of ~105).
DEFAULT_MIN_DETECTION_CONFIDENCE = 0.5


def run_images(paths: list[str], complexity: int,
               min_detection_confidence: float = DEFAULT_MIN_DETECTION_CONFIDENCE) -> dict:
    import mediapipe as mp

    landmarks, wall_ms, cpu_ms = [], [], []
    with mp.solutions.pose.Pose(static_image_mode=True, model_complexity=complexity,
                                min_detection_confidence=min_detection_confidence) as pose:
        for path in paths:
            image = cv2.imread(path, cv2.IMREAD_COLOR)
            if image is None:
                raise FileNotFoundError(f"cannot read image {path}")
            rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            t0, c0 = time.perf_counter(), time.process_time()
            result = pose.process(rgb)
            wall_ms.append((time.perf_counter() - t0) * 1e3)
            cpu_ms.append((time.process_time() - c0) * 1e3)
            landmarks.append(_landmarks_px(result, image.shape[1], image.shape[0]))
    return {"model": COMPLEXITY_NAMES[complexity], "model_complexity": complexity, "images": len(paths),
            "min_detection_confidence": min_detection_confidence, "found": sum(lm is not None for lm in landmarks), "ms_per_image": _summary(wall_ms),
            "cpu_ms_per_image": _summary(cpu_ms), "landmarks_px": landmarks}


def run_video(clip: str, complexity: int, warmup: int, max_frames: int | None) -> dict:
    import mediapipe as mp

    cap = cv2.VideoCapture(clip)
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot open clip {clip}")
    decode_ms, process_ms, found = [], [], 0
    size = None
    cpu_s, wall_s = 0.0, 0.0
    index = 0
    with mp.solutions.pose.Pose(static_image_mode=False, model_complexity=complexity) as pose:
        while max_frames is None or index < warmup + max_frames:
            t0 = time.perf_counter()
            ok, frame = cap.read()
            t1 = time.perf_counter()
            if not ok:
                break
            size = (frame.shape[1], frame.shape[0])
            c0 = time.process_time()
            t2 = time.perf_counter()
            result = pose.process(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            t3 = time.perf_counter()
            if index >= warmup:
                decode_ms.append((t1 - t0) * 1e3)
                process_ms.append((t3 - t2) * 1e3)
                cpu_s += time.process_time() - c0
                wall_s += t3 - t2
                found += result.pose_landmarks is not None
            index += 1
    cap.release()
    n = len(process_ms)
    if n == 0:
        raise ValueError(f"{clip}: no frames after the {warmup} warm-up frames")
    return {"model": COMPLEXITY_NAMES[complexity], "model_complexity": complexity, "clip": clip, "size": size,
            "frames": n, "warmup": warmup, "found": found, "decode_ms": _summary(decode_ms),
            "process_ms": _summary(process_ms), "fps_process": n / wall_s,
            "fps_with_decode": n / (wall_s + sum(decode_ms) / 1e3), "cpu_ms_per_frame": cpu_s * 1e3 / n,
            "cores_busy": cpu_s / wall_s}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=("images", "video"))
    p.add_argument("--list", type=Path, help="images: JSON file {\"images\": [paths]}")
    p.add_argument("--clip", help="video: the clip")
    p.add_argument("--complexity", type=int, nargs="+", default=[0, 1, 2], choices=sorted(COMPLEXITY_NAMES),
                   help="0 lite, 1 full, 2 heavy")
    p.add_argument("--min-detection-confidence", type=float, nargs="+", default=[DEFAULT_MIN_DETECTION_CONFIDENCE],
                   help="images: person-detection thresholds to run (each a separate run)")
    p.add_argument("--warmup", type=int, default=5, help="video: frames processed before timing starts")
    p.add_argument("--frames", type=int, default=None, help="video: frames to time (default: the rest of the clip)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)

    import mediapipe as mp

    out = {"peer": "mediapipe pose", "mediapipe": mp.__version__, "opencv": cv2.__version__, "numpy": np.__version__,
           "load_average_start": [round(v, 2) for v in os.getloadavg()], "mode": args.mode, "runs": []}
    if args.mode == "images":
        if args.list is None:
            p.error("images mode needs --list")
        paths = json.loads(args.list.read_text())["images"]
        for confidence in args.min_detection_confidence:
            for c in args.complexity:
                out["runs"].append(run_images(paths, c, confidence))
                print(f"mediapipe {COMPLEXITY_NAMES[c]} (detection >= {confidence}): {len(paths)} images, "
                      f"{out['runs'][-1]['found']} found, {out['runs'][-1]['ms_per_image']['median']:.1f} ms median",
                      file=sys.stderr)
    else:
        if args.clip is None:
            p.error("video mode needs --clip")
        for c in args.complexity:
            out["runs"].append(run_video(args.clip, c, args.warmup, args.frames))
            print(f"mediapipe {COMPLEXITY_NAMES[c]}: {out['runs'][-1]['fps_process']:.1f} FPS on {args.clip}",
                  file=sys.stderr)
    out["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Per-stage milliseconds and end-to-end frames per second of the runtime pipeline on a real clip.

    PYTHONPATH=. python benchmarks/bench_pipeline.py                      # sports2d clip at 720p, 2 threads
    PYTHONPATH=. python benchmarks/bench_pipeline.py --clip X.mp4 --height 720 --frames 150 --write out.mp4

Frames are decoded and resized to the target height first (decode is reported on its own), then fed to one
Pipeline with their timestamps. "end-to-end" is frames / time spent in Pipeline.process; "with decoding" adds
decoding and, with --write, H.264 encoding of the annotated frames. Numbers drift with machine load: compare
ratios from one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = REPO_ROOT.parent / "shared" / "videos" / "sports2d_demo.mp4"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    p.add_argument("--model", type=Path, default=None, help="ONNX model (default: the embedded default model)")
    p.add_argument("--height", type=int, default=720, help="resize frames to this height (keeps the aspect)")
    p.add_argument("--frames", type=int, default=150, help="frames to time (after warm-up)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime and OpenCV threads")
    p.add_argument("--exercise", default="squat")
    p.add_argument("--no-face-detector", action="store_true", help="pose-based face boxes only")
    p.add_argument("--background-detector", action="store_true", help="Haar detector on a worker thread")
    p.add_argument("--no-roi", action="store_true", help="whole-frame letterbox on every frame")
    p.add_argument("--write", type=Path, default=None, help="also encode the annotated frames to this .mp4")
    return p.parse_args(argv)


def load_frames(clip: Path, height: int, count: int) -> tuple[list[np.ndarray], list[float], float]:
    """``count`` frames resized to ``height``; a short clip is looped with time moving on."""
    from rehab.runtime.video import read_frames

    frames: list[np.ndarray] = []
    times: list[float] = []
    start = time.perf_counter()
    while len(frames) < count:
        offset = times[-1] + 1e-3 if times else 0.0
        for frame, t in read_frames(clip, max_frames=count - len(frames)):
            width = int(round(frame.shape[1] * height / frame.shape[0] / 2)) * 2
            frames.append(cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA))
            times.append(offset + t)
    decode_ms = (time.perf_counter() - start) * 1000.0 / len(frames)
    return frames, times, decode_ms


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cv2.setNumThreads(args.threads)
    from rehab.pipeline import STAGES, Pipeline
    from rehab.runtime.model import PoseModel
    from rehab.runtime.video import VideoWriter
    from rehab.settings import RuntimeSettings

    model = PoseModel.load(args.model, threads=args.threads)
    settings = RuntimeSettings().with_overrides(
        anonymize={"face_detector": not args.no_face_detector, "face_detector_background": args.background_detector},
        roi={"enabled": not args.no_roi})
    frames, times, decode_ms = load_frames(args.clip, args.height, args.warmup + args.frames)
    pipe = Pipeline(model, settings, exercise=args.exercise)
    for frame, t in zip(frames[:args.warmup], times[:args.warmup]):
        pipe.process(frame, t)

    writer = VideoWriter(args.write, fps=30) if args.write else None
    results, encode_s = [], 0.0
    start = time.perf_counter()
    for frame, t in zip(frames[args.warmup:], times[args.warmup:]):
        result = pipe.process(frame, t)
        results.append(result)
        if writer is not None:
            t0 = time.perf_counter()
            writer.write(result.frame_bgr)
            encode_s += time.perf_counter() - t0
    wall_s = time.perf_counter() - start
    if writer is not None:
        t0 = time.perf_counter()
        writer.close()
        encode_s += time.perf_counter() - t0

    n = len(results)
    h, w = frames[0].shape[:2]
    print(f"clip {args.clip.name} at {w}x{h}, {n} frames timed after {args.warmup} warm-up, "
          f"{args.threads} threads, model {model.path.name} ({model.info.input_size[0]}x{model.info.input_size[1]}), "
          f"face detector {'off' if args.no_face_detector else 'background' if args.background_detector else 'on'}, ROI {'off' if args.no_roi else 'on'}")
    print()
    print("| stage | median ms | mean ms | p95 ms | max ms |")
    print("|---|---|---|---|---|")
    for stage in STAGES + ("total",):
        values = [r.timings_ms[stage] for r in results]
        print(f"| {stage} | {statistics.median(values):.2f} | {statistics.fmean(values):.2f} | "
              f"{float(np.percentile(values, 95)):.2f} | {max(values):.2f} |")
    print(f"| decode + resize (before the loop) | | {decode_ms:.2f} | | |")
    if writer is not None:
        print(f"| H.264 encode | | {encode_s * 1000.0 / n:.2f} | | |")
    print()
    process_s = sum(r.timings_ms["total"] for r in results) / 1000.0
    io_s = wall_s + decode_ms / 1000.0 * n
    print(f"end-to-end Pipeline.process: {n / process_s:.1f} frames/s ({process_s * 1000.0 / n:.1f} ms/frame)")
    print(f"with decoding{' and encoding' if writer else ''}: {n / io_s:.1f} frames/s")
    found = sum(r.person_found for r in results)
    tracked = sum(r.roi_reason == "track" for r in results)
    print(f"pose found in {found}/{n} frames; ROI tracked in {tracked}/{n}; "
          f"anonymisation: { {m: sum(r.anonymization == m for r in results) for m in dict.fromkeys(r.anonymization for r in results)} }")
    return 0


if __name__ == "__main__":
    sys.exit(main())

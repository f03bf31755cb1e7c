"""End-to-end frames per second and per-stage milliseconds of the runtime pipeline on a real clip.

    PYTHONPATH=. python benchmarks/bench_pipeline.py --clip 720p                 # live settings, no recording
    PYTHONPATH=. python benchmarks/bench_pipeline.py --clip 1080p --record --json benchmarks/results/pipeline_1080p_rec.json
    PYTHONPATH=. python benchmarks/bench_pipeline.py --clip path/to/any.mp4 --face-detector sync

One loop, as a live session or `rehab process` runs it, timed over --repeats passes (the fastest pass is
reported: on a shared machine other processes only ever slow a pass down): decode a frame (PyAV/FFmpeg, in the loop) ->
Pipeline.process (roi, pose, smooth, angles, reps, anonymize, draw) -> with --record, H.264-encode the
annotated frame (rehab.runtime.video.VideoWriter: libx264 veryfast, CRF 23). FPS = timed frames / wall time of
the whole loop; "process only" leaves out decoding and encoding. CPU ms/frame is this process's CPU time (all
its threads) per frame: the cost, which other processes' load changes far less than the wall time. Clip labels (720p, 1080p, 1080p-portrait)
name real clips from ../shared/videos, transcoded once to H.264 at that height (see benchmarks/common.py).

The face detector (CenterFace, rehab.runtime.centerface) runs as the live page runs it by default
(--face-detector background: on a worker thread whenever it is free, at most every
face_detector_background_every_frames frames, its CPU time included in the wall time); `sync` is the batch
setting (the detector in the loop on every frame), `off` uses the pose-based face box only. Numbers drift with machine
load: the load average is printed and stored; compare ratios from one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import (
    CLIPS,
    DEFAULT_MODEL,
    WORK_DIR,
    command_line,
    finish,
    int8_variant,
    machine,
    prepare_clip,
    subpixel_variant,
)

FACE_DETECTOR_MODES = ("background", "sync", "off")
VARIANTS = ("fp32", "int8", "fp32_subpixel", "int8_subpixel")
# The live page's recorder (rehab/app/live_session.py): a constant 15 fps video, x264 on one thread, each
# processed frame written as often as the recording clock needs it (skipped when the camera is faster).
LIVE_RECORD_FPS = 15.0
LIVE_RECORD_THREADS = 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clip", default="720p", help=f"a clip label ({', '.join(CLIPS)}) or a video file")
    p.add_argument("--model", type=Path, default=None, help="ONNX model (default: the embedded default model)")
    p.add_argument("--variant", choices=VARIANTS, default="fp32",
                   help="a variant of --model made as bench_inference.py makes it (int8: `rehab export --int8`'s "
                        "quantisation; *_subpixel: deconvolutions rewritten by export.subpixel, the same file when already rewritten)")
    p.add_argument("--frames", type=int, default=None,
                   help="frames to time after the warm-up (default: the rest of the clip; more loops the clip)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3,
                   help="timed passes over the frames; the fastest is reported (others' load only slows a pass)")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads (and x264's with --record)")
    p.add_argument("--cv-threads", type=int, default=None, help="OpenCV threads (default: --threads)")
    p.add_argument("--allow-spinning", action="store_true",
                   help="ONNX Runtime intra-op spin-waiting (the runtime turns it off by default)")
    p.add_argument("--exercise", default="squat")
    p.add_argument("--face-detector", choices=FACE_DETECTOR_MODES, default="background",
                   help="CenterFace face detector: on a worker thread (live page), in the loop (batch), or off")
    p.add_argument("--no-roi", action="store_true", help="whole-frame letterbox on every frame")
    p.add_argument("--face-detector-every", type=int, default=None,
                   help="run the face detector at most every N frames (default: the runtime settings' value for the mode)")
    p.add_argument("--record", action="store_true", help="also H.264-encode every annotated frame (a temp file)")
    p.add_argument("--record-live", action="store_true",
                   help=f"record as the live page does: {LIVE_RECORD_FPS:g} fps by the frames' timestamps, x264 on "
                        f"{LIVE_RECORD_THREADS} thread")
    p.add_argument("--prefetch", action="store_true",
                   help="decode on a reader thread (rehab.runtime.video.prefetch, as batch processing does), "
                        "overlapping the pipeline (decode ms is then the wait for a frame)")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    return p.parse_args(argv)


def resolve_clip(text: str) -> Path:
    if text in CLIPS:
        return prepare_clip(text)
    path = Path(text)
    if not path.is_file():
        raise FileNotFoundError(f"--clip {text}: neither a clip label ({', '.join(CLIPS)}) nor a video file")
    return path


def frames_forever(clip: Path):
    """(frame, timestamp_s, decode_ms) from ``clip``, looping with time moving on; decoding is timed."""
    from rehab.runtime.video import VideoReader

    offset = 0.0
    while True:
        last_t = 0.0
        with VideoReader(clip) as reader:
            frame_s = 1.0 / reader.info.fps
            it = iter(reader)
            while True:
                t0 = time.perf_counter()
                try:
                    frame, t = next(it)
                except StopIteration:
                    break
                decode_ms = (time.perf_counter() - t0) * 1e3
                last_t = t
                yield frame, offset + t, decode_ms
        offset += last_t + frame_s


def prefetched(source, depth: int | None = None):
    """``source``'s items decoded on the runtime's reader thread (rehab.runtime.video.prefetch, what batch
    processing uses); the decode time becomes the time spent waiting for a frame."""
    from rehab.runtime.video import DEFAULT_PREFETCH_FRAMES, prefetch

    items = prefetch(source, DEFAULT_PREFETCH_FRAMES if depth is None else depth)
    try:
        while True:
            t0 = time.perf_counter()
            try:
                frame, t, _ = next(items)
            except StopIteration:
                return
            yield frame, t, (time.perf_counter() - t0) * 1e3
    finally:
        items.close()


def model_path(args: argparse.Namespace) -> Path:
    base = args.model or DEFAULT_MODEL
    if args.variant == "fp32":
        return base
    if args.variant == "int8":
        return int8_variant(base, WORK_DIR)
    sub = subpixel_variant(base, WORK_DIR)
    return sub if args.variant == "fp32_subpixel" else int8_variant(sub, WORK_DIR)


def clip_frame_count(clip: Path) -> int:
    from rehab.runtime.video import probe_video

    count = probe_video(clip).frame_count
    if count <= 0:
        raise ValueError(f"{clip}: the container does not say how many frames it has; pass --frames")
    return count


def stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "mean": statistics.fmean(values),
            "p95": float(np.percentile(values, 95)), "max": max(values)}


def timed_pass(pipe, source, frames: int, args: argparse.Namespace) -> dict:
    """One timed pass of ``frames`` frames: FPS, CPU time, per-stage times and what the pipeline saw."""
    from rehab.pipeline import STAGES
    from rehab.runtime.video import VideoWriter

    per_stage: dict[str, list[float]] = {s: [] for s in ("decode", *STAGES, "encode", "frame")}
    found = tracked = 0
    anonymization: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        writer = None
        if args.record:
            writer = VideoWriter(Path(tmp) / "recording.mp4", fps=30, threads=args.threads)
        elif args.record_live:
            writer = VideoWriter(Path(tmp) / "recording.mp4", fps=LIVE_RECORD_FPS, threads=LIVE_RECORD_THREADS)
        video_t0 = None
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(frames):
            t_frame = time.perf_counter()
            frame, t, decode_ms = next(source)
            r = pipe.process(frame, t)
            if writer is not None:
                t0 = time.perf_counter()
                copies = 1
                if args.record_live:
                    video_t0 = t if video_t0 is None else video_t0
                    copies = max(0, int((t - video_t0) * LIVE_RECORD_FPS) + 1 - writer.frames_written)
                for _ in range(copies):
                    writer.write(r.frame_bgr)
                per_stage["encode"].append((time.perf_counter() - t0) * 1e3)
            per_stage["frame"].append((time.perf_counter() - t_frame) * 1e3)
            per_stage["decode"].append(decode_ms)
            for stage in STAGES:
                per_stage[stage].append(r.timings_ms[stage])
            found += r.person_found
            tracked += r.roi_reason == "track"
            anonymization[r.anonymization] = anonymization.get(r.anonymization, 0) + 1
        # The encoder's buffered frames are part of the recording's cost.
        if writer is not None:
            t0 = time.perf_counter()
            writer.close()
            per_stage["encode"][-1] += (time.perf_counter() - t0) * 1e3
        wall_s = time.perf_counter() - start
        cpu_s = time.process_time() - start_cpu
    process_s = sum(sum(per_stage[s]) for s in STAGES) / 1e3
    return {"size": [frame.shape[1], frame.shape[0]], "fps": frames / wall_s, "fps_process_only": frames / process_s,
            "ms_per_frame": wall_s * 1e3 / frames, "cpu_ms_per_frame": cpu_s * 1e3 / frames,
            "cores_busy": cpu_s / wall_s, "stages_ms": {s: stats(v) for s, v in per_stage.items() if v},
            "found": found, "roi_tracked": tracked, "anonymization": anonymization}


def run(args: argparse.Namespace) -> dict:
    cv_threads = args.cv_threads if args.cv_threads is not None else args.threads
    cv2.setNumThreads(cv_threads)
    from rehab.pipeline import Pipeline
    from rehab.runtime.model import PoseModel
    from rehab.settings import RuntimeSettings

    clip = resolve_clip(args.clip)
    frames_to_time = args.frames if args.frames is not None else clip_frame_count(clip) - args.warmup
    if frames_to_time < 1:
        raise ValueError(f"nothing to time: {clip} is too short for {args.warmup} warm-up frames")
    model = PoseModel.load(model_path(args), threads=args.threads, allow_spinning=args.allow_spinning)
    anonymize = {"face_detector": args.face_detector != "off",
                 "face_detector_background": args.face_detector == "background"}
    if args.face_detector_every is not None:
        key = "face_detector_background_every_frames" if args.face_detector == "background" else "face_detector_every_frames"
        anonymize[key] = args.face_detector_every
    settings = RuntimeSettings().with_overrides(anonymize=anonymize, roi={"enabled": not args.no_roi})
    pipe = Pipeline(model, settings, exercise=args.exercise)
    source = prefetched(frames_forever(clip)) if args.prefetch else frames_forever(clip)
    for _ in range(args.warmup):
        frame, t, _ = next(source)
        pipe.process(frame, t)

    result = {"benchmark": "pipeline", "command": command_line(), "machine": machine()}
    passes = [timed_pass(pipe, source, frames_to_time, args) for _ in range(args.repeats)]
    source.close()
    # The least disturbed pass stands for the configuration: other processes only ever slow a pass down.
    best = max(passes, key=lambda p: p["fps"])
    frame_w, frame_h = best.pop("size")
    result.update(
        clip=args.clip, clip_file=clip.name, size=[frame_w, frame_h], frames=frames_to_time, warmup=args.warmup,
        threads=args.threads, cv_threads=cv_threads, allow_spinning=args.allow_spinning, model=model.path.name, model_input=list(model.info.input_size),
        precision=model.info.precision, variant=args.variant, face_detector=args.face_detector,
        face_detector_model="centerface",
        face_detector_every_frames=(settings.anonymize.face_detector_background_every_frames
                                    if args.face_detector == "background" else settings.anonymize.face_detector_every_frames),
        face_detector_max_side_px=settings.anonymize.face_detector_max_side_px, roi=not args.no_roi,
        record=args.record or args.record_live, record_mode="every frame" if args.record else "live 15 fps" if args.record_live else "off",
        prefetch=args.prefetch, repeats=args.repeats,
        fps_all_passes=[p["fps"] for p in passes], cpu_ms_per_frame_all_passes=[p["cpu_ms_per_frame"] for p in passes],
        **best)
    return result


def print_report(r: dict) -> None:
    print(f"clip {r['clip']} ({r['clip_file']}, {r['size'][0]}x{r['size'][1]}), {r['frames']} frames timed after "
          f"{r['warmup']} warm-up, {r['threads']} threads, model {r['model']} ({r['precision']}, "
          f"{r['model_input'][0]}x{r['model_input'][1]}), face detector {r['face_detector']} every "
          f"{r['face_detector_every_frames']} frames, decode {'on a reader thread' if r['prefetch'] else 'in the loop'}, "
          f"ROI {'on' if r['roi'] else 'off'}, recording {r['record_mode']}; "
          f"load average {r['machine']['load_average_start'][0]:.2f}")
    print()
    print("| stage | median ms | mean ms | p95 ms | max ms |")
    print("|---|---|---|---|---|")
    for stage, s in r["stages_ms"].items():
        print(f"| {stage} | {s['median']:.2f} | {s['mean']:.2f} | {s['p95']:.2f} | {s['max']:.2f} |")
    print()
    print("passes: " + ", ".join(f"{f:.1f}" for f in r["fps_all_passes"]) + " frames/s; the fastest is shown")
    print(f"end to end: {r['fps']:.1f} frames/s ({r['ms_per_frame']:.1f} ms/frame); "
          f"Pipeline.process only: {r['fps_process_only']:.1f} frames/s; CPU time {r['cpu_ms_per_frame']:.1f} ms/frame "
          f"(all threads of this process, {r['cores_busy']:.2f} cores busy on average)")
    print(f"pose found in {r['found']}/{r['frames']} frames; ROI tracked in {r['roi_tracked']}/{r['frames']}; "
          f"anonymisation: {r['anonymization']}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    finish(result, args.json)
    print_report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

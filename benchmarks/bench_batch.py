"""Batch throughput: videos per minute and frames per second of `rehab process` on the sample clips.

    PYTHONPATH=. python benchmarks/bench_batch.py                          # all sample clips, 1 and 2 workers
    PYTHONPATH=. python benchmarks/bench_batch.py --workers 1 2 --max-seconds 1 --model path/to/model.onnx
    # local engine vs Ray (a local Ray instance, or --address) on 4 copies of the 720p clip, same parallelism:
    PYTHONPATH=. python benchmarks/bench_batch.py --clip 720p --copies 4 --engines local ray --workers 1 2

With ``--engines ... ray`` each ``--workers N`` is matched on Ray by ``--cpus-per-video cores/N`` (N videos at
a time on this machine), and Ray's start-up is timed on its own (``ray.init`` + ``ray.shutdown`` in a fresh
process), so the per-video overhead of Ray is (Ray wall - local wall - start-up) / videos.

Each configuration runs the real batch (decode -> pipeline -> H.264 encode -> tables -> report) into a fresh
temporary folder, so nothing is skipped; the wall time includes starting the worker processes and writing
the reports, as a therapist would see it. Numbers drift with machine load: compare ratios from one run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO_ROOT / "sample_videos"
SHARED_VIDEOS = REPO_ROOT.parent / "shared" / "videos"
SAMPLE_NAMES = ("pose2sim_balancing_cam01.mp4", "pose2sim_balancing_cam02.mp4", "pose2sim_balancing_cam03.mp4",
                "pose2sim_balancing_cam04.mp4", "sports2d_demo.mp4")


def default_clips() -> list[Path]:
    for folder in (SAMPLE_DIR, SHARED_VIDEOS):
        clips = [folder / name for name in SAMPLE_NAMES if (folder / name).is_file()]
        if clips:
            return clips
    return []


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("clips", nargs="*", type=Path, help="videos (default: the sample clips)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--model", type=Path, default=None, help="ONNX model (default: the embedded default model)")
    p.add_argument("--exercise", default="squat")
    p.add_argument("--max-seconds", type=float, default=None, help="only the first N seconds of each clip")
    p.add_argument("--stride", type=int, default=1)
    p.add_argument("--max-side", type=int, default=None)
    p.add_argument("--no-pdf", action="store_true")
    p.add_argument("--clip", default=None, help="a clip label of benchmarks/common.py (e.g. 720p) instead of clips")
    p.add_argument("--copies", type=int, default=1, help="process this many copies of each clip")
    p.add_argument("--engines", nargs="+", default=["local"], choices=["local", "ray"])
    p.add_argument("--address", default=None, help="Ray cluster for the ray engine (default: a local instance)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    return p.parse_args(argv)


def ray_start_s() -> float:
    """Seconds to start and stop a local Ray instance in a fresh process (the fixed cost of --engine ray)."""
    code = ("import logging, time, ray\nt = time.perf_counter()\n"
            "ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.WARNING)\n"
            "ray.shutdown()\nprint(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", "import os\n" + code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def copies_of(clips: list[Path], copies: int, folder: Path) -> list[Path]:
    if copies <= 1:
        return clips
    linked = []
    for clip in clips:
        for i in range(copies):
            # Copies, not links: batch processes a file once however many names it has.
            copy = folder / f"{clip.stem}_copy{i}{clip.suffix}"
            shutil.copyfile(clip, copy)
            linked.append(copy)
    return linked


def main(argv: list[str] | None = None) -> int:
    from rehab.batch import BatchOptions, run_batch, usable_cpus

    args = parse_args(argv)
    if args.clip:
        from benchmarks.common import prepare_clip

        clips = [prepare_clip(args.clip)]
    else:
        clips = args.clips or default_clips()
    if not clips:
        print("no clips: run `python -m rehab.samples` or pass video paths", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    cores = usable_cpus()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-batch-clips-") as copies:
        clips = copies_of(clips, args.copies, Path(copies))
        print(f"{len(clips)} clips: {', '.join(c.name for c in clips)}; load average {os.getloadavg()[0]:.2f}")
        start_s = ray_start_s() if "ray" in args.engines and args.address is None else None
        if start_s is not None:
            print(f"starting + stopping a local Ray instance alone: {start_s:.2f} s")
        print(f"{'engine':>6}  {'at once':>7}  {'videos':>6}  {'frames':>6}  {'wall s':>7}  {'videos/min':>10}  "
              f"{'frames/s':>8}  {'Ray s/video':>11}  failed")
        for workers in args.workers:
            local_wall = None
            for engine in args.engines:
                options = BatchOptions(exercise=args.exercise, workers=workers if engine == "local" else 1,
                                       max_seconds=args.max_seconds, stride=args.stride, max_side_px=args.max_side,
                                       pdf=not args.no_pdf, progress=False)
                with tempfile.TemporaryDirectory(prefix="bench-batch-") as out:
                    if engine == "ray":
                        from rehab.batch_ray import run_batch_ray

                        batch = run_batch_ray(clips, out, options, model_path=args.model, address=args.address,
                                              cpus_per_video=max(1, cores // workers))
                    else:
                        batch = run_batch(clips, out, options, model_path=args.model)
                done = len(batch.with_status("done"))
                overhead = None
                if engine == "ray" and local_wall is not None and done:
                    overhead = (batch.elapsed_s - local_wall - (start_s or 0.0)) / done
                if engine == "local":
                    local_wall = batch.elapsed_s
                failed = ", ".join(f"{r.name}: {r.message}" for r in batch.failed) or "-"
                print(f"{engine:>6}  {batch.workers:>7}  {done:>6}  {batch.frames_processed:>6}  {batch.elapsed_s:>7.1f}  "
                      f"{batch.videos_per_minute:>10.2f}  {batch.frames_per_second:>8.1f}  "
                      f"{'-' if overhead is None else f'{overhead:+.2f}':>11}  {failed}", flush=True)
                rows.append({"engine": engine, "at_once": batch.workers, "videos": done,
                             "frames": batch.frames_processed, "wall_s": batch.elapsed_s,
                             "videos_per_min": batch.videos_per_minute, "frames_per_s": batch.frames_per_second,
                             "ray_overhead_s_per_video": overhead, "failed": failed})
    if args.json is not None:
        args.json.write_text(json.dumps({"clips": [c.name for c in clips], "ray_start_s": start_s,
                                         "load_average": list(os.getloadavg()), "rows": rows,
                                         "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                         "command": " ".join(sys.argv)}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Batch throughput: videos per minute and frames per second of `rehab process` on the sample clips.

    PYTHONPATH=. python benchmarks/bench_batch.py                          # all sample clips, 1 and 2 workers
    PYTHONPATH=. python benchmarks/bench_batch.py --workers 1 2 --max-seconds 1 --model path/to/model.onnx

Each configuration runs the real batch (decode -> pipeline -> H.264 encode -> tables -> report) into a fresh
temporary folder, so nothing is skipped; the wall time includes starting the worker processes and writing
the reports, as a therapist would see it. Numbers drift with machine load: compare ratios from one run.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
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
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from rehab.batch import BatchOptions, run_batch

    args = parse_args(argv)
    clips = args.clips or default_clips()
    if not clips:
        print("no clips: run `python -m rehab.samples` or pass video paths", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    print(f"{len(clips)} clips: {', '.join(c.name for c in clips)}")
    print(f"{'workers':>7}  {'videos':>6}  {'frames':>6}  {'wall s':>7}  {'videos/min':>10}  {'frames/s':>8}  failed")
    for workers in args.workers:
        options = BatchOptions(exercise=args.exercise, workers=workers, max_seconds=args.max_seconds,
                               stride=args.stride, max_side_px=args.max_side, pdf=not args.no_pdf, progress=False)
        with tempfile.TemporaryDirectory(prefix="bench-batch-") as out:
            batch = run_batch(clips, out, options, model_path=args.model)
        failed = ", ".join(f"{r.name}: {r.message}" for r in batch.failed) or "-"
        print(f"{workers:>7}  {len(batch.with_status('done')):>6}  {batch.frames_processed:>6}  "
              f"{batch.elapsed_s:>7.1f}  {batch.videos_per_minute:>10.2f}  {batch.frames_per_second:>8.1f}  {failed}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

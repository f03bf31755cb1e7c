"""Phantom skeletons, persons found and acquisition delay on real footage, with and without the presence output.

    PYTHONPATH=. python benchmarks/bench_presence.py [--model M.onnx] [--json benchmarks/results/presence.json]

Truth: tests/presence_clips.py (hand labels; clips built from real footage with person-free stretches).
Three rows per clip, from one run: the pipeline as shipped (the model's presence output decides who is there,
a search over windows while nobody is tracked or when a track is lost, a person reported once found on
roi.confirm_frames frames in a row), the same without the re-search and the confirmation, and "presence ignored" (scores.presence_min = 0, as before the
presence output: a person is found wherever enough joints score high). Also the pose-stage cost of a searching
frame vs a tracked one: the search is paid only while nobody is tracked.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import command_line, finish, machine
from rehab.pipeline import Pipeline
from rehab.runtime.model import PoseModel
from rehab.settings import RuntimeSettings
from tests.presence_clips import (ALL_PRESENT, BUILT_CLIPS, SPORTS2D_PEOPLE, build_clip, find_clip, run_pipeline,
                                  score_presence, skeleton_on_people)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=None, help="ONNX model (default: the embedded default model)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    model = PoseModel.load(args.model, threads=args.threads)
    # The face detector does not change who is found; it stays off to keep the run short.
    base = RuntimeSettings().with_overrides(anonymize={"face_detector": False})
    variants = {"as shipped": base,
                # the tracker before it searched the frame on which a track was lost and confirmed a person
                "no re-search, no confirmation": base.with_overrides(roi={"search_on_loss": False,
                                                                          "confirm_frames": 1}),
                "presence ignored": base.with_overrides(scores={"presence_min": 0.0, "presence_acquire_min": 0.0})}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clips = [(c.name, build_clip(c, Path(tmp)), c.truth, c.entries) for c in BUILT_CLIPS]
        for name in ALL_PRESENT:
            path = find_clip(name)
            if path is not None:
                clips.append((name, path, None, []))
        for label, settings in variants.items():
            for name, path, truth, entries in clips:
                res = run_pipeline(Pipeline(model, settings), path)
                found = [r["found"] for r in res]
                score = score_presence(name, found, np.ones(len(res), bool) if truth is None else truth, entries,
                                       [r["pose_ms"] for r in res], [r["searched"] for r in res])
                row = {"variant": label, **score.__dict__, "found_rate": score.found_rate,
                       "phantom_rate": score.phantom_rate}
                if name == "sports2d_demo.mp4":
                    on = skeleton_on_people(res, SPORTS2D_PEOPLE, (1768, 994))
                    row["skeleton_off_people_frames"] = [f for f, ok in on.items() if not ok]
                rows.append(row)
                acq = ",".join(str(a) for a in score.acquisition_frames) or "-"
                print(f"{label:17s} {name:30s} found {score.found_rate:6.1%} of {score.present_frames:3d}  "
                      f"phantom {score.phantom_rate:6.1%} of {score.absent_frames:3d}  acquisition {acq:>5s} frames  "
                      f"pose ms search {score.search_ms:6.1f} / track {score.track_ms:5.1f}"
                      + (f"  off-person {row['skeleton_off_people_frames']}" if "skeleton_off_people_frames" in row
                         else ""))
    return finish({"benchmark": "presence", "command": command_line(), "model": str(model.path),
                   "machine": machine(threads=args.threads), "rows": rows}, args.json)


if __name__ == "__main__":
    main()

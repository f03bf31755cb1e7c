"""The skeleton's shape on real footage through the shipped pipeline: the gate a pose model must pass before it
becomes the default, beside its LSP test score.

    PYTHONPATH=. python -m benchmarks.bench_skeleton_shape --candidate runs/v2/v2b.int8.onnx [--model M.onnx]

Every clip of the real-footage checks (tests/presence_clips.py: everyone in them stands, walks or balances, nobody
lies down) runs through the pipeline as shipped (face detector off: it does not move joints), once per model.
Per clip and model, over the frames with a skeleton:
- span: the head-to-lower-ankle distance in pixels, median (a skeleton that collapses onto the feet shrinks it),
- inverted: the share of frames with the head top below the lower ankle (a skeleton upside down),
- head below hips: the share with the head top below the higher hip.
The last column is candidate / model for the span. LSP photos are single frames in a person's box; the pipeline
feeds the model boxes it derived from the previous frame's skeleton, so a model that shrinks or flips the skeleton
is punished here and not on LSP.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from benchmarks.common import command_line, finish, machine
from rehab.core.skeleton import LSP14
from rehab.pipeline import Pipeline
from rehab.runtime.model import PoseModel
from rehab.settings import RuntimeSettings
from tests.presence_clips import ALL_PRESENT, find_clip, run_pipeline

HEAD = LSP14.joints.index("head_top")
ANKLES = [LSP14.joints.index(j) for j in ("left_ankle", "right_ankle")]
HIPS = [LSP14.joints.index(j) for j in ("left_hip", "right_hip")]


def shape_of(keypoints: list[np.ndarray]) -> dict[str, float]:
    """Median head-to-lower-ankle span and the shares of inverted / head-below-hips skeletons (image y grows down)."""
    if not keypoints:
        return {"frames": 0, "span_px": float("nan"), "inverted": float("nan"), "head_below_hips": float("nan")}
    kp = np.stack(keypoints)
    head, lower_ankle, upper_hip = kp[:, HEAD, 1], kp[:, ANKLES, 1].max(axis=1), kp[:, HIPS, 1].min(axis=1)
    return {"frames": len(kp), "span_px": float(np.median(lower_ankle - head)),
            "inverted": float(np.mean(head > lower_ankle)), "head_below_hips": float(np.mean(head > upper_hip))}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--candidate", type=Path, required=True, help="the ONNX model that would replace the default")
    p.add_argument("--model", type=Path, default=None, help="the reference (default: the embedded default model)")
    p.add_argument("--json", type=Path, default=None, help="write the rows and the machine here")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads per model")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    models = {label: PoseModel.load(path, threads=args.threads)
              for label, path in (("model", args.model), ("candidate", args.candidate))}
    logging.basicConfig(level=logging.WARNING)
    settings = RuntimeSettings().with_overrides(anonymize={"face_detector": False})  # faces do not move joints
    rows = []
    print(f"{'clip':30s} {'model':>9s}: frames  span px  inverted  head<hips | {'candidate':>9s}: frames  span px  "
          f"inverted  head<hips | span ratio")
    for name in ALL_PRESENT:
        path = find_clip(name)
        if path is None:
            print(f"{name}: not found (skipped)")
            continue
        row = {"clip": name}
        for label, model in models.items():
            res = run_pipeline(Pipeline(model, settings), path)
            row[label] = shape_of([r["keypoints_px"] for r in res if r["found"] and r["keypoints_px"] is not None])
        rows.append(row)
        cells = " | ".join(f"{'':>9s}  {s['frames']:5d}  {s['span_px']:7.0f}  {s['inverted']:8.1%}  "
                           f"{s['head_below_hips']:9.1%}" for s in (row["model"], row["candidate"]))
        print(f"{name:30s} {cells} | {row['candidate']['span_px'] / row['model']['span_px']:10.2f}")
    return finish({"benchmark": "skeleton_shape", "command": command_line(), "model": str(models["model"].path),
                   "candidate": str(models["candidate"].path), "machine": machine(threads=args.threads),
                   "rows": rows}, args.json)


if __name__ == "__main__":
    main()

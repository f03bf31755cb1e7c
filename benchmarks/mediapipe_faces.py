"""MediaPipe's full-range face detector on every N-th frame of videos: runs INSIDE MediaPipe's own venv.

It imports neither rehab nor the project's venv packages (see setup_mediapipe.sh). benchmarks/bench_faces.py
calls it and uses its boxes in the face-leak check (raw faces at >= 0.6, found again at >= 0.3).

    /work/mp-venv/bin/python benchmarks/mediapipe_faces.py --every 5 --min-score 0.3 --out OUT.json A.mp4 B.mp4

Writes {video path: {frame index: [[x1, y1, x2, y2, score], ...]}} in frame pixels.
"""

from __future__ import annotations

import argparse
import json
import sys

import cv2

# model_selection=1: the full-range model (faces up to ~5 m from the camera); 0 is the 2 m short-range one.
FULL_RANGE = 1


def boxes(detector, frame_bgr) -> list[list[float]]:
    h, w = frame_bgr.shape[:2]
    result = detector.process(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB))
    out = []
    for d in result.detections or []:
        r = d.location_data.relative_bounding_box
        out.append([r.xmin * w, r.ymin * h, (r.xmin + r.width) * w, (r.ymin + r.height) * h, float(d.score[0])])
    return out


def main(argv: list[str] | None = None) -> int:
    import mediapipe as mp

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("videos", nargs="+")
    p.add_argument("--every", type=int, default=5)
    p.add_argument("--min-score", type=float, default=0.3)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    found: dict[str, dict[int, list]] = {}
    with mp.solutions.face_detection.FaceDetection(model_selection=FULL_RANGE,
                                                   min_detection_confidence=args.min_score) as detector:
        for video in args.videos:
            cap = cv2.VideoCapture(video)
            if not cap.isOpened():
                print(f"cannot open {video}", file=sys.stderr)
                return 2
            per_frame, index = {}, 0
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                if index % args.every == 0:
                    per_frame[index] = boxes(detector, frame)
                index += 1
            cap.release()
            found[video] = per_frame
    with open(args.out, "w") as f:
        json.dump(found, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())

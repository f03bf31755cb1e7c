#!/usr/bin/env bash
# Build the MediaPipe Pose peer's own venv (outside the repository) for benchmarks/mediapipe_runner.py.
#
#   bash benchmarks/setup_mediapipe.sh [VENV_DIR]        # default /work/mp-venv
#
# MediaPipe needs numpy<2 and protobuf<5, which clash with the project's venv (numpy 2), so it gets a venv
# of its own; the runner writes JSON that the main venv scores with rehab.evaluation.
# mediapipe==0.10.21 is installed with --no-deps plus the few packages its pose solution imports (its full
# dependency list drags in jax, sounddevice and others it does not need here). The wheel ships only the
# "full" pose landmark model (model_complexity=1); the lite (0) and heavy (2) .tflite files would be
# downloaded from a Google host at run time, which this machine cannot reach, so they are taken from the npm
# package @mediapipe/pose (the same files, published for the web build) and copied next to the full one.
# The face-leak check (benchmarks/bench_faces.py) runs two more tools here: MediaPipe's full-range face detector
# (inside the same mediapipe wheel) and `deface` 1.5.0, the reference anonymiser, as its anchor. deface is
# installed with --no-deps (its requirements pull opencv-python, which clashes with the headless OpenCV) plus
# what it imports; it needs onnx for its model loader: onnx 1.16.2 is the last release that works with
# protobuf 4.25 (onnx 1.23 needs protobuf 6, mediapipe needs < 5).
# Re-running is safe: an existing venv is reused and the model files are checked.
set -euo pipefail

VENV_DIR="${1:-/work/mp-venv}"
PYTHON="${PYTHON:-python3.11}"
MEDIAPIPE_VERSION="0.10.21"
DEFACE_VERSION="1.5.0"
NPM_POSE_PACKAGE="@mediapipe/pose@0.5.1675469404"
MODELS=(pose_landmark_lite.tflite pose_landmark_heavy.tflite)

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    PYTHON=python3
fi
"$PYTHON" -c 'import sys; assert sys.version_info[:2] <= (3, 12), "mediapipe 0.10.21 has wheels for Python <= 3.12"' \
    || { echo "error: $PYTHON is too new for mediapipe $MEDIAPIPE_VERSION; set PYTHON=python3.11" >&2; exit 2; }

if [ ! -x "$VENV_DIR/bin/python" ]; then
    echo "creating venv $VENV_DIR with $("$PYTHON" --version)"
    "$PYTHON" -m venv "$VENV_DIR"
fi
PIP=("$VENV_DIR/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --no-deps "mediapipe==$MEDIAPIPE_VERSION"
"${PIP[@]}" install absl-py attrs flatbuffers "numpy<2" "opencv-python-headless<4.12" "protobuf>=4.25.3,<5" matplotlib
"${PIP[@]}" install --no-deps "deface==$DEFACE_VERSION"
"${PIP[@]}" install "imageio>=2.25" "imageio-ffmpeg>=0.4.6" tqdm scikit-image "onnx==1.16.2" onnxruntime "numpy<2" \
    "protobuf>=4.25.3,<5" "opencv-python-headless<4.12"

MODULE_DIR="$("$VENV_DIR/bin/python" -c 'import mediapipe, os; print(os.path.join(os.path.dirname(mediapipe.__file__), "modules", "pose_landmark"))')"
missing=()
for m in "${MODELS[@]}"; do
    [ -s "$MODULE_DIR/$m" ] || missing+=("$m")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if ! command -v npm >/dev/null 2>&1; then
        echo "error: npm is needed to fetch ${missing[*]} from $NPM_POSE_PACKAGE (install Node.js/npm)" >&2
        exit 2
    fi
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && npm pack --silent "$NPM_POSE_PACKAGE" >/dev/null)
    tar -xzf "$tmp"/*.tgz -C "$tmp"
    for m in "${missing[@]}"; do
        if [ ! -s "$tmp/package/$m" ]; then
            echo "error: $NPM_POSE_PACKAGE does not contain $m" >&2
            exit 2
        fi
        cp "$tmp/package/$m" "$MODULE_DIR/$m"
        echo "installed $m from $NPM_POSE_PACKAGE"
    done
fi

# Smoke test: every model complexity builds its graph offline and runs on a blank image.
"$VENV_DIR/bin/python" - <<'EOF'
import numpy as np
import mediapipe as mp

for complexity in (0, 1, 2):
    with mp.solutions.pose.Pose(static_image_mode=True, model_complexity=complexity) as pose:
        pose.process(np.zeros((256, 256, 3), np.uint8))
with mp.solutions.face_detection.FaceDetection(model_selection=1) as faces:
    faces.process(np.zeros((256, 256, 3), np.uint8))
print(f"mediapipe {mp.__version__}: pose lite/full/heavy and full-range face detection load offline")
EOF
"$VENV_DIR/bin/deface" --help >/dev/null
echo "deface $DEFACE_VERSION runs (--no-deps, headless OpenCV)"
echo "MediaPipe venv ready: $VENV_DIR"

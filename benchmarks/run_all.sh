#!/usr/bin/env bash
# Run every benchmark and regenerate the table in benchmarks/README.md (results in benchmarks/results/*.json).
#
#   bash benchmarks/run_all.sh                       # with the project's venv (.venv, from .ci/setup dev)
#   PAUSE_PID=$(cat /work/runs/default_mnv2.pid) bash benchmarks/run_all.sh
#
# Phases: (1) prepare, not timed: MediaPipe venv, transcoded clips, exported and quantised models (cached in
# out/benchmarks); (2) timing: inference, pipeline, training, peer speed -- PAUSE_PID, if set, is stopped
# (SIGSTOP) for this phase only and resumed (SIGCONT) on any exit, so a background job does not skew the
# figures; (3) accuracy, which load does not change: LSP PCK of ours (FP32, INT8) and MediaPipe;
# (4) the table. About 8 minutes of phase 2 on 2 cores.
#
# Environment: PYTHON (default .venv/bin/python, else python3), MP_VENV (default /work/mp-venv),
# REHAB_SHARED_DIR (default ../shared), RESULTS (default benchmarks/results), PAUSE_PID.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-$( [ -x "$ROOT/.venv/bin/python" ] && echo "$ROOT/.venv/bin/python" || echo python3 )}"
MP_VENV="${MP_VENV:-/work/mp-venv}"
RESULTS="${RESULTS:-benchmarks/results}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export REHAB_MP_VENV="$MP_VENV"
mkdir -p "$RESULTS"
run() { echo "+ $*" >&2; "$@"; }

echo "== 1. prepare (not timed)"
[ -x "$MP_VENV/bin/python" ] || run bash benchmarks/setup_mediapipe.sh "$MP_VENV"
run "$PYTHON" benchmarks/bench_inference.py --subpixel --prepare-only
run "$PYTHON" -c 'from benchmarks.common import CLIPS, prepare_clip; [prepare_clip(c) for c in CLIPS]'

echo "== 2. timing ($(uptime))"
if [ -n "${PAUSE_PID:-}" ]; then
    trap 'kill -CONT "$PAUSE_PID" 2>/dev/null || true' EXIT
    kill -STOP "$PAUSE_PID"
    echo "paused pid $PAUSE_PID (resumed on exit)"
fi
run "$PYTHON" benchmarks/bench_inference.py --subpixel --threads 1 2 --json "$RESULTS/inference.json"
# The runtime turns intra-op spin-waiting off (the model shares the cores with decoding and the UI); these rows
# show what that costs on an otherwise idle machine (measured: without spinning a 2-thread session uses one core).
run "$PYTHON" benchmarks/bench_inference.py --threads 2 --allow-spinning --rounds 5 \
    --json "$RESULTS/inference_spinning.json"
rm -f "$RESULTS"/pipeline_*.json
# As shipped, frames are decoded on another thread than the model's: the video page and `rehab process` use a
# reader thread (rehab.runtime.video.prefetch), the live page gets frames decoded by streamlit-webrtc's thread.
for clip in 720p 1080p 1080p-portrait; do
    run "$PYTHON" benchmarks/bench_pipeline.py --clip "$clip" --prefetch --json "$RESULTS/pipeline_${clip}.json"
    run "$PYTHON" benchmarks/bench_pipeline.py --clip "$clip" --prefetch --record-live --json "$RESULTS/pipeline_${clip}_reclive.json"
    run "$PYTHON" benchmarks/bench_pipeline.py --clip "$clip" --prefetch --record --json "$RESULTS/pipeline_${clip}_rec.json"
done
# What the live 720p figure depends on, one factor at a time: decoding in the model's loop, the face detector,
# threads, spinning, the INT8 model.
P720=("$PYTHON" benchmarks/bench_pipeline.py --clip 720p --repeats 2)
run "${P720[@]}" --json "$RESULTS/pipeline_720p_inloop.json"
run "${P720[@]}" --prefetch --face-detector off --json "$RESULTS/pipeline_720p_nodetector.json"
run "${P720[@]}" --prefetch --face-detector-every 30 --json "$RESULTS/pipeline_720p_detector30.json"
run "${P720[@]}" --prefetch --threads 1 --cv-threads 2 --json "$RESULTS/pipeline_720p_1thread.json"
run "${P720[@]}" --prefetch --allow-spinning --json "$RESULTS/pipeline_720p_spinning.json"
run "${P720[@]}" --variant int8_subpixel --prefetch --json "$RESULTS/pipeline_720p_int8sp_prefetch.json"
run "${P720[@]}" --variant int8_subpixel --prefetch --record-live --json "$RESULTS/pipeline_720p_int8sp_prefetch_reclive.json"
run "${P720[@]}" --variant int8_subpixel --prefetch --record --json "$RESULTS/pipeline_720p_int8sp_prefetch_rec.json"
run "$PYTHON" benchmarks/bench_peer.py --subpixel --skip-lsp --json "$RESULTS/peer_speed.json"
run "$PYTHON" benchmarks/bench_training.py --json "$RESULTS/training.json"
if [ -n "${PAUSE_PID:-}" ]; then
    kill -CONT "$PAUSE_PID"
    trap - EXIT
    echo "resumed pid $PAUSE_PID"
fi

echo "== 3. accuracy ($(uptime))"
run "$PYTHON" benchmarks/bench_peer.py --subpixel --skip-video --json "$RESULTS/peer_lsp.json"
run "$PYTHON" benchmarks/bench_presence.py --json "$RESULTS/presence.json"

echo "== 4. table"
run "$PYTHON" benchmarks/make_table.py --results "$RESULTS"

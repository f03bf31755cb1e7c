"""Where an ONNX model spends its time: ONNX Runtime's profiler, summed per operator type (and per node).

    PYTHONPATH=. python benchmarks/profile_ort.py rehab/models/default.onnx --batch 1 --threads 2
    PYTHONPATH=. python benchmarks/profile_ort.py out/benchmarks/models/resnet50_paper.onnx --batch 8 --top 15

Runs the model ``--runs`` times on zeros after a warm-up with ORT's profiling on, and prints the share of
kernel time per operator type (e.g. Conv, ConvTranspose, QLinearConv, DequantizeLinear, reorders of the NCHWc
layout) and the slowest nodes. Shares are far less sensitive to machine load than absolute times.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime as ort

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rehab.runtime.session import session_options


def profile(model: Path, batch: int, threads: int, runs: int, allow_spinning: bool) -> list[dict]:
    opts = session_options(threads=threads, allow_spinning=allow_spinning)
    with tempfile.TemporaryDirectory(prefix="ort-profile-") as tmp:
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        spec = session.get_inputs()[0]
        shape = [batch if not isinstance(d, int) or d <= 0 else d for d in spec.shape]
        shape[0] = batch
        x = np.zeros(shape, np.float32)
        for _ in range(3):
            session.run(None, {spec.name: x})
        for _ in range(runs):
            session.run(None, {spec.name: x})
        path = session.end_profiling()
        events = json.loads(Path(path).read_text())
    # Skip the warm-up runs: keep the last ``runs`` model_run events' time windows.
    run_events = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    windows = [(e["ts"], e["ts"] + e["dur"]) for e in run_events[-runs:]]
    nodes = []
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        if not any(a <= e["ts"] <= b for a, b in windows):
            continue
        nodes.append({"node": e["name"][:-len("_kernel_time")], "op": e["args"].get("op_name", "?"), "us": e["dur"]})
    return nodes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--top", type=int, default=10, help="slowest nodes to list")
    p.add_argument("--allow-spinning", action="store_true")
    args = p.parse_args(argv)
    nodes = profile(args.model, args.batch, args.threads, args.runs, args.allow_spinning)
    total = sum(n["us"] for n in nodes)
    by_op: dict[str, list[float]] = defaultdict(list)
    by_node: dict[tuple[str, str], float] = defaultdict(float)
    for n in nodes:
        by_op[n["op"]].append(n["us"])
        by_node[(n["node"], n["op"])] += n["us"]
    print(f"{args.model.name}: batch {args.batch}, {args.threads} threads, {args.runs} runs; "
          f"kernel time {total / args.runs / 1e3:.2f} ms per run")
    print(f"{'op':<28}{'share':>8}{'ms/run':>9}{'nodes':>7}")
    for op, values in sorted(by_op.items(), key=lambda kv: -sum(kv[1])):
        print(f"{op:<28}{100 * sum(values) / total:>7.1f}%{sum(values) / args.runs / 1e3:>9.3f}"
              f"{len(values) // args.runs:>7}")
    print(f"\nslowest {args.top} nodes:")
    for (node, op), us in sorted(by_node.items(), key=lambda kv: -kv[1])[:args.top]:
        print(f"  {100 * us / total:5.1f}%  {us / args.runs / 1e3:7.3f} ms  {op:<20} {node}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""ONNX Runtime inference speed of the exported pose models: FP32 vs INT8, batch-1 latency, batch-8 throughput.

For each model (the default MobileNetV2 preset and the ResNet-50 paper preset, random weights unless a
checkpoint is given: speed does not depend on the weights) this exports FP32 ONNX and a static QDQ INT8 variant
calibrated on real LSP images, then times both in one interleaved loop so that a change in machine load hits
both alike. It also measures the machine's FP32 GEMM peak (numpy and an ONNX MatMul, same threads) to put each
model's achieved GFLOP/s in proportion.

    cd /work/main && PYTHONPATH=. /work/venv/bin/python benchmarks/bench_inference.py --threads 2

Timings drift with the load of a shared machine: the load average is printed before and after; compare
ratios taken in one run. Achieved GFLOP/s counts the FP32-equivalent convolution work (2 x multiply-adds), so
an INT8 model, whose VNNI integer peak is several times the FP32 one, can exceed 100% of the FP32 peak.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from export.describe import info_from_config  # noqa: E402
from export.evaluate import lsp_records, network_inputs  # noqa: E402
from export.onnx_export import attach_metadata, save_single_file, torch_to_onnx  # noqa: E402
from export.variants import quantize_int8  # noqa: E402
from rehab.runtime.session import create_session  # noqa: E402

PRESETS = {"default": REPO / "train/configs/default_mnv2.yaml", "resnet50_paper": REPO / "train/configs/resnet50_paper.yaml"}
CALIBRATION_IMAGES = 32
LATENCY_BATCH, THROUGHPUT_BATCH = 1, 8
GEMM_N = 2048


@dataclass(frozen=True)
class Timing:
    model: str
    variant: str
    threads: int
    gflops_per_image: float
    latency_ms: float  # median, batch 1
    throughput_img_s: float  # median, batch 8
    cpu_ms_per_image: float  # median process CPU time per image at batch 8: the cost, robust to other load
    size_mb: float


def build(preset: str, checkpoint: str | None):
    """(torch model, resolved Config) of a preset; random weights unless ``checkpoint``."""
    from train.config import load_config, resolve
    from train.model import build_model, load_checkpoint

    if checkpoint:
        model, cfg, _ = load_checkpoint(checkpoint)
        return model, cfg
    cfg = load_config(PRESETS[preset], overrides=["model.backbone_init=random"])
    cfg = resolve(cfg)
    return build_model(cfg.model, init_backbone=False).eval(), cfg


def conv_gflops(path: Path) -> float:
    """Multiply-adds x 2 of the Conv and ConvTranspose nodes for one image."""
    model = onnx.load(str(path))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    model = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)}
    weights = {i.name: list(i.dims) for i in model.graph.initializer}
    flops = 0.0
    for node in model.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose"):
            continue
        w = weights[node.input[1]]
        if node.op_type == "Conv":
            out = shapes[node.output[0]]  # (1, C_out, H, W); weight (C_out, C_in/g, kh, kw)
            flops += 2.0 * np.prod(out[1:]) * np.prod(w[1:])
        else:
            inp = shapes[node.input[0]]  # (1, C_in, H, W); weight (C_in, C_out/g, kh, kw)
            flops += 2.0 * np.prod(inp[1:]) * np.prod(w[1:])
    return flops / 1e9


def gemm_peak_numpy(repeats: int = 5) -> float:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((GEMM_N, GEMM_N), dtype=np.float32)
    b = rng.standard_normal((GEMM_N, GEMM_N), dtype=np.float32)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * GEMM_N**3 / best / 1e9


def gemm_peak_ort(threads: int, repeats: int = 5) -> float:
    rng = np.random.default_rng(0)
    b = numpy_helper.from_array(rng.standard_normal((GEMM_N, GEMM_N), dtype=np.float32), "b")
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [GEMM_N, GEMM_N])],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [GEMM_N, GEMM_N])], [b])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    a = rng.standard_normal((GEMM_N, GEMM_N), dtype=np.float32)
    session.run(None, {"a": a})
    best = min(_timed(lambda: session.run(None, {"a": a})) for _ in range(repeats))
    return 2 * GEMM_N**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def prepare(preset: str, work_dir: Path, data_root: str | None, checkpoint: str | None) -> tuple[Path, Path, np.ndarray]:
    """FP32 and INT8 files of ``preset`` in ``work_dir`` (reused when present) and some real input tensors."""
    fp32, int8 = work_dir / f"{preset}.onnx", work_dir / f"{preset}.int8.onnx"
    model, cfg = build(preset, checkpoint)
    info = info_from_config(cfg, {}, name=preset)
    tensors = network_inputs(lsp_records(data_root, "train", CALIBRATION_IMAGES), info)
    if not fp32.exists():
        proto = torch_to_onnx(model, info.input_size)
        attach_metadata(proto, info)
        save_single_file(proto, fp32)
    if not int8.exists():
        quantize_int8(fp32, int8, tensors, progress=True)
    return fp32, int8, tensors


def measure(preset: str, paths: dict[str, Path], tensors: np.ndarray, threads: int, allow_spinning: bool,
            rounds: int, gflops: float) -> list[Timing]:
    sessions = {v: create_session(p, providers=["cpu"], threads=threads, allow_spinning=allow_spinning)[0]
                for v, p in paths.items()}
    name = sessions["fp32"].get_inputs()[0].name
    one = tensors[:LATENCY_BATCH]
    eight = np.concatenate([tensors] * (THROUGHPUT_BATCH // len(tensors) + 1))[:THROUGHPUT_BATCH]
    lat: dict[str, list[float]] = {v: [] for v in sessions}
    thr: dict[str, list[float]] = {v: [] for v in sessions}
    cpu: dict[str, list[float]] = {v: [] for v in sessions}
    for s in sessions.values():  # warm-up: first runs allocate and pick kernels
        s.run(None, {name: one})
        s.run(None, {name: eight})
    for _ in range(rounds):
        for v, s in sessions.items():  # interleaved, so load changes hit both variants alike
            lat[v].extend(_timed(lambda: s.run(None, {name: one})) for _ in range(3))
            start_cpu = time.process_time()
            thr[v].append(_timed(lambda: s.run(None, {name: eight})))
            cpu[v].append((time.process_time() - start_cpu) / THROUGHPUT_BATCH)
    return [Timing(preset, v, threads, gflops, 1e3 * statistics.median(lat[v]),
                   THROUGHPUT_BATCH / statistics.median(thr[v]), 1e3 * statistics.median(cpu[v]),
                   paths[v].stat().st_size / 1e6) for v in sessions]


def table(rows: list[Timing], peaks: dict[int, float]) -> str:
    head = ("model", "variant", "threads", "MB", "GFLOP/img", "batch-1 ms", "batch-8 img/s", "CPU ms/img",
            "INT8/FP32 b1 ms", "INT8/FP32 b8 img/s", "INT8/FP32 CPU", "GFLOP/s (b8)", "% of FP32 peak")
    fp32 = {(r.model, r.threads): r for r in rows if r.variant == "fp32"}
    lines = [head]
    for r in rows:
        base = fp32[(r.model, r.threads)]
        achieved = r.gflops_per_image * r.throughput_img_s
        lines.append((r.model, r.variant, str(r.threads), f"{r.size_mb:.1f}", f"{r.gflops_per_image:.2f}",
                      f"{r.latency_ms:.1f}", f"{r.throughput_img_s:.1f}", f"{r.cpu_ms_per_image:.1f}",
                      "-" if r is base else f"{r.latency_ms / base.latency_ms:.2f}",
                      "-" if r is base else f"{r.throughput_img_s / base.throughput_img_s:.2f}",
                      "-" if r is base else f"{r.cpu_ms_per_image / base.cpu_ms_per_image:.2f}",
                      f"{achieved:.0f}", f"{100 * achieved / peaks[r.threads]:.0f}%"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in lines)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--threads", type=int, nargs="+", default=[2])
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds (3 batch-1 + 1 batch-8 runs each)")
    parser.add_argument("--allow-spinning", action="store_true", help="ORT intra-op spin-waiting (off by default)")
    parser.add_argument("--work-dir", type=Path, default=None, help="where the .onnx files go (reused if present)")
    parser.add_argument("--data-root", default=None, help="folder with data/lsp (default $REHAB_SHARED_DIR or ../shared)")
    parser.add_argument("--default-checkpoint", default=None, help="a trained checkpoint for the default model")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(max(args.threads))
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="rehab-bench-"))
    work_dir.mkdir(parents=True, exist_ok=True)

    print(f"# {cpu_name()}, {os.cpu_count()} cores; onnxruntime {ort.__version__}; numpy {np.__version__}; "
          f"spinning {'on' if args.allow_spinning else 'off'}; load average {os.getloadavg()[0]:.2f} at start")
    prepared = {m: prepare(m, work_dir, args.data_root, args.default_checkpoint if m == "default" else None)
                for m in args.models}
    peak_np = gemm_peak_numpy()
    peak_ort = {t: gemm_peak_ort(t) for t in args.threads}
    rows: list[Timing] = []
    for threads in args.threads:
        for m, (fp32, int8, tensors) in prepared.items():
            rows += measure(m, {"fp32": fp32, "int8": int8}, tensors, threads, args.allow_spinning, args.rounds,
                            conv_gflops(fp32))
    # The peak of a row is the best FP32 GEMM at its thread count; numpy runs on all its BLAS threads.
    peaks = {t: max(v, peak_np) if t >= (os.cpu_count() or 1) else v for t, v in peak_ort.items()}
    print(f"# FP32 GEMM {GEMM_N}x{GEMM_N}: numpy {peak_np:.0f} GFLOP/s (its own BLAS threads"
          f"{', OPENBLAS_CORETYPE=' + os.environ['OPENBLAS_CORETYPE'] if 'OPENBLAS_CORETYPE' in os.environ else ''}), "
          + ", ".join(f"ONNX MatMul {v:.0f} GFLOP/s at {t} thread(s)" for t, v in peak_ort.items())
          + "; peak per thread count: " + ", ".join(f"{t}: {v:.0f}" for t, v in peaks.items()))
    print(table(rows, peaks))
    print(f"# load average {os.getloadavg()[0]:.2f} at end; files in {work_dir}")


if __name__ == "__main__":
    main()

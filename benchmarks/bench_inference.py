"""ONNX Runtime inference speed of the exported pose models: FP32 vs INT8, batch-1 latency, batch-8 throughput.

For each model -- the default model as shipped (rehab/models/default.onnx) and the ResNet-50 paper preset
(random weights: speed does not depend on them) -- this takes the FP32 ONNX file and a static QDQ INT8 variant
made as `rehab export --int8` makes it (128 LSP train images for calibration), then times both in one
interleaved loop so that a change in machine load hits both alike. It also measures the machine's FP32 GEMM
peak at each thread count (ONNX Runtime MatMul, torch, numpy without the OPENBLAS_CORETYPE cap; the best of
them) to put each model's achieved GFLOP/s in proportion.

    cd /work/main && PYTHONPATH=. .venv/bin/python benchmarks/bench_inference.py --threads 1 2 \
        --json benchmarks/results/inference.json

Exported and quantised files are cached in out/benchmarks/models (keyed by the FP32 file's hash), so only the
first run exports the ResNet-50 preset and calibrates the INT8 files.

Timings drift with the load of a shared machine: the load average is printed before and after; compare
ratios taken in one run. Achieved GFLOP/s counts the FP32-equivalent convolution work (2 x multiply-adds), so
an INT8 model, whose VNNI integer peak is several times the FP32 one, can exceed 100% of the FP32 peak.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import (
    DEFAULT_MODEL,
    WORK_DIR,
    command_line,
    cpu_name,
    finish,
    int8_variant,
    machine,
    subpixel_variant,
)
from export.describe import info_from_config
from export.lsp_check import lsp_records, network_inputs
from export.onnx_export import attach_metadata, save_single_file, torch_to_onnx
from rehab.runtime.session import create_session

PRESETS = {"default": REPO / "train/configs/default_mnv2.yaml", "resnet50_paper": REPO / "train/configs/resnet50_paper.yaml"}
# Real images as timing input (content does not change the cost; real ones keep INT8 ranges realistic).
INPUT_IMAGES = 8
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


_NUMPY_GEMM = """
import sys, time, numpy as np
n, repeats = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
a = rng.standard_normal((n, n), dtype=np.float32)
b = rng.standard_normal((n, n), dtype=np.float32)
a @ b
best = min((lambda t0: (a @ b, time.perf_counter() - t0)[1])(time.perf_counter()) for _ in range(repeats))
print(2 * n ** 3 / best / 1e9)
"""


def gemm_peak_numpy(threads: int, repeats: int = 5) -> float:
    """numpy's BLAS at ``threads`` threads, in a child process without this machine's OPENBLAS_CORETYPE cap.

    OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE are set here for old OpenBLAS builds and pin a current one to its
    Haswell (AVX2) kernels, about half its AVX-512 speed: they are dropped for this measurement only.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env.update(OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, "-c", _NUMPY_GEMM, str(GEMM_N), str(repeats)], env=env, check=True,
                         capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def gemm_peak_torch(threads: int, repeats: int = 5) -> float:
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(0)
        a = torch.randn(GEMM_N, GEMM_N, generator=gen)
        b = torch.randn(GEMM_N, GEMM_N, generator=gen)
        a @ b
        best = min(_timed(lambda: a @ b) for _ in range(repeats))
    finally:
        torch.set_num_threads(previous)
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


def prepare(preset: str, work_dir: Path, data_root: str | None, checkpoint: str | None,
            default_model: Path | None, subpixel: bool = False) -> tuple[dict[str, Path], np.ndarray]:
    """The variant files of ``preset`` (FP32, INT8, and with ``subpixel`` both again with the deconvolutions in
    sub-pixel form; cached in ``work_dir``) and a few real input tensors.

    The default preset uses the shipped model file when there is one (its real weights and graph); otherwise,
    like the ResNet-50 preset, it is exported from the preset's config (random weights unless ``checkpoint``).
    """
    from rehab.runtime.model import PoseModel

    models = work_dir / "models"
    models.mkdir(parents=True, exist_ok=True)
    if preset == "default" and default_model is not None and checkpoint is None:
        fp32 = default_model
    else:
        fp32 = models / (f"{preset}.onnx" if checkpoint is None else f"{preset}.{Path(checkpoint).stem}.onnx")
        if not fp32.exists():
            model, cfg = build(preset, checkpoint)
            info = info_from_config(cfg, {}, name=preset)
            proto = torch_to_onnx(model, info.input_size)
            attach_metadata(proto, info)
            save_single_file(proto, fp32)
    paths = {"fp32": fp32, "int8": int8_variant(fp32, work_dir, data_root=data_root)}
    if subpixel:
        paths["fp32_subpixel"] = subpixel_variant(fp32, work_dir)
        paths["int8_subpixel"] = int8_variant(paths["fp32_subpixel"], work_dir, data_root=data_root)
    info = PoseModel.load(fp32, providers="cpu").info
    tensors = network_inputs(lsp_records(data_root, "train", INPUT_IMAGES), info)
    return paths, tensors


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


def rows_as_dicts(rows: list[Timing], peaks: dict[int, float]) -> list[dict]:
    """JSON rows with the derived figures: speed-ups against FP32 and efficiency against the FP32 peak."""
    by_key = {(r.model, r.threads, r.variant): r for r in rows}
    out = []
    for r in rows:
        base = by_key[(r.model, r.threads, "fp32")]
        # The FP32 file of the same graph: an INT8 file's own starting point.
        same = by_key.get((r.model, r.threads, r.variant.replace("int8", "fp32")), base)
        achieved_b8 = r.gflops_per_image * r.throughput_img_s
        achieved_b1 = r.gflops_per_image * 1e3 / r.latency_ms
        out.append({**r.__dict__, "gflops_per_s_b8": achieved_b8, "gflops_per_s_b1": achieved_b1,
                    "peak_gflops_per_s": peaks[r.threads], "efficiency_b8": achieved_b8 / peaks[r.threads],
                    "efficiency_b1": achieved_b1 / peaks[r.threads],
                    "speedup_latency_vs_fp32": base.latency_ms / r.latency_ms,
                    "speedup_throughput_vs_fp32": r.throughput_img_s / base.throughput_img_s,
                    "cpu_saving_vs_fp32": base.cpu_ms_per_image / r.cpu_ms_per_image,
                    "same_graph_fp32": same.variant,
                    "speedup_latency_vs_same_graph_fp32": same.latency_ms / r.latency_ms,
                    "speedup_throughput_vs_same_graph_fp32": r.throughput_img_s / same.throughput_img_s})
    return out


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds (3 batch-1 + 1 batch-8 runs each)")
    parser.add_argument("--allow-spinning", action="store_true", help="ORT intra-op spin-waiting (off by default)")
    parser.add_argument("--work-dir", type=Path, default=WORK_DIR, help="where exported .onnx files are cached")
    parser.add_argument("--data-root", default=None, help="folder with data/lsp (default $REHAB_SHARED_DIR or ../shared)")
    parser.add_argument("--default-model", type=Path, default=DEFAULT_MODEL if DEFAULT_MODEL.is_file() else None,
                        help="the default model's FP32 .onnx (default: rehab/models/default.onnx)")
    parser.add_argument("--default-checkpoint", default=None, help="export the default model from this checkpoint instead")
    parser.add_argument("--subpixel", action="store_true",
                        help="also time both variants with the deconvolutions in sub-pixel form (export.subpixel; the same files when the model was exported so)")
    parser.add_argument("--prepare-only", action="store_true", help="export and quantise, then stop (no timing)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(max(args.threads))
    prepared = {m: prepare(m, args.work_dir, args.data_root, args.default_checkpoint if m == "default" else None,
                           args.default_model, args.subpixel)
                for m in args.models}
    if args.prepare_only:
        print("prepared: " + "; ".join(f"{m}: " + ", ".join(map(str, paths.values()))
                                       for m, (paths, _) in prepared.items()))
        return
    result = {"benchmark": "inference", "command": command_line(),
              "machine": machine(spinning=args.allow_spinning, openblas_coretype=os.environ.get("OPENBLAS_CORETYPE"))}
    print(f"# {cpu_name()}, {os.cpu_count()} cores; onnxruntime {ort.__version__}; numpy {np.__version__}; "
          f"spinning {'on' if args.allow_spinning else 'off'}; load average {os.getloadavg()[0]:.2f} at start")
    gemm = {t: {"onnxruntime": gemm_peak_ort(t), "torch": gemm_peak_torch(t), "numpy": gemm_peak_numpy(t)}
            for t in args.threads}
    peaks = {t: max(v.values()) for t, v in gemm.items()}
    rows: list[Timing] = []
    for threads in args.threads:
        for m, (paths, tensors) in prepared.items():
            rows += measure(m, paths, tensors, threads, args.allow_spinning, args.rounds, conv_gflops(paths["fp32"]))
    print(f"# FP32 GEMM {GEMM_N}x{GEMM_N} GFLOP/s: " + "; ".join(
        f"{t} thread(s): " + ", ".join(f"{k} {v:.0f}" for k, v in g.items()) + f" -> peak {peaks[t]:.0f}"
        for t, g in gemm.items()))
    print(table(rows, peaks))
    print(f"# load average {os.getloadavg()[0]:.2f} at end; files in {args.work_dir / 'models'}")
    result.update(gemm_n=GEMM_N, gemm_gflops_per_s={str(t): g for t, g in gemm.items()},
                  peak_gflops_per_s={str(t): v for t, v in peaks.items()}, rows=rows_as_dicts(rows, peaks),
                  files={m: {v: str(p) for v, p in paths.items()} for m, (paths, _) in prepared.items()})
    finish(result, args.json)


if __name__ == "__main__":
    main()

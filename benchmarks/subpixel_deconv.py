"""Rewrite stride-2 ConvTranspose nodes as four 2x2 Convs + DepthToSpace (sub-pixel form): same maths, faster.

ONNX Runtime's CPU ConvTranspose is a GEMM followed by a memory-bound col2im scatter: in the default model the
three 4x4 deconvolutions of the head are ~40% of FP32 time, and they cannot be quantised (no integer
ConvTranspose kernel), so they are ~60% of INT8 time (benchmarks/profile_ort.py). A ConvTranspose with
kernel 4, stride 2, padding 1 is exactly four ordinary 2x2 convolutions -- one per output phase (row parity
a, column parity b) -- whose outputs interleave into the 2x larger map: Concat in DepthToSpace "DCR" order,
then DepthToSpace(2). The multiply-adds are the same; the Convs run on ORT's fast (NCHWc, and INT8 QLinearConv)
kernels. ORT's DepthToSpace is a plain strided copy, slow on the 128-channel head; when the deconvolution
feeds (through a Relu) a pointwise 1x1 Conv -- the heatmap layer -- that Relu and 1x1 Conv commute with the
interleaving and run on each phase first, so only the K heatmap channels are interleaved.

For output row y = 2m + a of ConvTranspose(stride 2, pad 1, kernel 4): y = 2*i - 1 + k, so a = 0 takes
inputs i = m-1, m with kernel rows k = 3, 1, and a = 1 takes i = m, m+1 with rows 2, 0. As a cross-correlation
over the input padded by (1 - a) above and a below, the 2x2 kernel of phase a has rows (3, 1) or (2, 0).

    PYTHONPATH=. python benchmarks/subpixel_deconv.py IN.onnx OUT.onnx      # rewrite, check, compare speed

This is a prototype kept beside the benchmarks; the export engineer may adopt it as an export pass.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

# Kernel rows (or columns) used by output phase 0 and 1, in cross-correlation order; see the module doc.
PHASE_TAPS = {0: (3, 1), 1: (2, 0)}
SUPPORTED = {"strides": [2, 2], "pads": [1, 1, 1, 1], "kernel_shape": [4, 4], "group": 1, "dilations": [1, 1]}


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _rewritable(node: onnx.NodeProto, initializers: dict) -> bool:
    if node.op_type != "ConvTranspose" or node.input[1] not in initializers:
        return False
    a = _attrs(node)
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or "output_shape" in a:
        return False
    if any(a.get("output_padding", [0, 0])):
        return False
    kernel = a.get("kernel_shape") or list(numpy_helper.to_array(initializers[node.input[1]]).shape[2:])
    actual = {"strides": list(a.get("strides", [1, 1])), "pads": list(a.get("pads", [0, 0, 0, 0])),
              "kernel_shape": list(kernel), "group": a.get("group", 1), "dilations": list(a.get("dilations", [1, 1]))}
    return actual == SUPPORTED


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    users: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for name in n.input:
            users.setdefault(name, []).append(n)
    return users


def _pointwise_tail(node: onnx.NodeProto, users: dict, outputs: set[str]) -> tuple[onnx.NodeProto, onnx.NodeProto] | None:
    """(Relu, 1x1 Conv) when ``node``'s output feeds only a Relu that feeds only a pointwise Conv."""
    relu = users.get(node.output[0], [])
    if len(relu) != 1 or relu[0].op_type != "Relu" or node.output[0] in outputs:
        return None
    conv = users.get(relu[0].output[0], [])
    if len(conv) != 1 or conv[0].op_type != "Conv" or relu[0].output[0] in outputs:
        return None
    a = _attrs(conv[0])
    if (a.get("kernel_shape") != [1, 1] or a.get("group", 1) != 1 or any(a.get("pads", [0, 0, 0, 0]))
            or a.get("strides", [1, 1]) != [1, 1] or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")):
        return None
    return relu[0], conv[0]


def rewrite(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """A copy of ``model`` with every supported ConvTranspose in sub-pixel form, and how many were rewritten."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    initializers = {i.name: i for i in graph.initializer}
    users = _consumers(graph)
    outputs = {o.name for o in graph.output}
    absorbed: set[str] = set()  # Relu/Conv nodes now applied per phase
    nodes: list[onnx.NodeProto] = []
    count = 0
    for node in graph.node:
        if node.output[0] in absorbed:
            continue
        if not _rewritable(node, initializers):
            nodes.append(node)
            continue
        count += 1
        weight = numpy_helper.to_array(initializers[node.input[1]])  # (C_in, C_out, 4, 4)
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else ""
        base = node.name or node.output[0]
        tail = _pointwise_tail(node, users, outputs)
        phases = []
        for a in (0, 1):
            for b in (0, 1):
                rows, cols = PHASE_TAPS[a], PHASE_TAPS[b]
                kernel = weight[:, :, list(rows), :][:, :, :, list(cols)].transpose(1, 0, 2, 3)  # (C_out, C_in, 2, 2)
                w_name = f"{base}_subpixel_w{a}{b}"
                graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(kernel), w_name))
                y = f"{base}_subpixel_y{a}{b}"
                nodes.append(helper.make_node("Conv", [node.input[0], w_name] + ([bias] if bias else []), [y],
                                              name=f"{base}_subpixel_conv{a}{b}", kernel_shape=[2, 2],
                                              pads=[1 - a, 1 - b, a, b], strides=[1, 1]))
                if tail is not None:
                    _, conv = tail
                    r = f"{y}_relu"
                    nodes.append(helper.make_node("Relu", [y], [r], name=f"{base}_subpixel_relu{a}{b}"))
                    y = f"{y}_pointwise"
                    nodes.append(helper.make_node("Conv", [r, *conv.input[1:]], [y], name=f"{base}_subpixel_pw{a}{b}",
                                                  kernel_shape=[1, 1]))
                phases.append(y)
        final = node.output[0]
        if tail is not None:
            absorbed.update(n.output[0] for n in tail)
            final = tail[1].output[0]
        cat = f"{base}_subpixel_phases"
        nodes.append(helper.make_node("Concat", phases, [cat], name=f"{base}_subpixel_concat", axis=1))
        nodes.append(helper.make_node("DepthToSpace", [cat], [final], name=f"{base}_subpixel_d2s",
                                      blocksize=2, mode="DCR"))
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for n in graph.node for name in n.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.value_info[:]  # shapes of the replaced tensors may have changed; ORT infers them again
    onnx.checker.check_model(out)
    return out, count


def _time(path: Path, x: np.ndarray, threads: int, runs: int) -> tuple[np.ndarray, float]:
    from rehab.runtime.session import create_session

    session, _ = create_session(path, providers="cpu", threads=threads)
    name = session.get_inputs()[0].name
    y = session.run(None, {name: x})[0]
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(None, {name: x})
        times.append(time.perf_counter() - t0)
    return y, float(np.median(times)) * 1e3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", type=Path)
    p.add_argument("output", type=Path)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--runs", type=int, default=30)
    args = p.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    model = onnx.load(str(args.input))
    new, count = rewrite(model)
    onnx.save(new, str(args.output))
    print(f"rewrote {count} ConvTranspose node(s): {args.output}")
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(0).standard_normal([args.batch, *dims[1:]]).astype(np.float32)
    y0, t0 = _time(args.input, x, args.threads, args.runs)
    y1, t1 = _time(args.output, x, args.threads, args.runs)
    print(f"max |difference| {np.abs(y0 - y1).max():.2e} (output range {np.abs(y0).max():.2e}); "
          f"median {t0:.2f} -> {t1:.2f} ms at batch {args.batch}, {args.threads} threads ({t0 / t1:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Export pass: stride-2 ConvTranspose nodes rewritten as four 2x2 Convs + DepthToSpace (sub-pixel form).

Same maths, faster. ONNX Runtime's CPU ConvTranspose is a GEMM followed by a memory-bound col2im scatter: in
the default model the three 4x4 deconvolutions of the head are ~40% of FP32 time, and they cannot be quantised
(no integer ConvTranspose kernel), so they are ~60% of INT8 time (benchmarks/profile_ort.py). A ConvTranspose
with kernel 4, stride 2, padding 1 is exactly four ordinary 2x2 convolutions -- one per output phase (row
parity a, column parity b) -- whose outputs interleave into the 2x larger map: Concat in DepthToSpace "DCR"
order, then DepthToSpace(2). The multiply-adds are the same; the Convs run on ORT's fast (NCHWc, and INT8
QLinearConv) kernels. Measured: 1.1-1.2x faster in FP32, and INT8 2.4-2.7x faster than FP32 (benchmarks/README.md).

ORT's DepthToSpace is a plain strided copy, slow on the 128-channel head; when the deconvolution feeds (through
a Relu) a pointwise 1x1 Conv -- the heatmap layer -- that Relu and 1x1 Conv commute with the interleaving and
run on each phase first, so only the K heatmap channels are interleaved.

For output row y = 2m + a of ConvTranspose(stride 2, pad 1, kernel 4): y = 2*i - 1 + k, so a = 0 takes
inputs i = m-1, m with kernel rows k = 3, 1, and a = 1 takes i = m, m+1 with rows 2, 0. As a cross-correlation
over the input padded by (1 - a) above and a below, the 2x2 kernel of phase a has rows (3, 1) or (2, 0).

``subpixel_rewrite(model)`` returns the rewritten copy after checking, in ONNX Runtime on random inputs, that
it computes what the original computes (``SubpixelError`` otherwise). Other ConvTranspose nodes (other kernel,
stride, padding, groups) are left as they are; a graph with none to rewrite comes back unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from export.verify import VerificationError

logger = logging.getLogger(__name__)

# Kernel rows (or columns) used by output phase 0 and 1, in cross-correlation order; see the module doc.
PHASE_TAPS = {0: (3, 1), 1: (2, 0)}
SUPPORTED = {"strides": [2, 2], "pads": [1, 1, 1, 1], "kernel_shape": [4, 4], "group": 1, "dilations": [1, 1]}
# DepthToSpace has its "mode" attribute (DCR/CRD) from opset 11 on.
MIN_OPSET = 11
# The check: the rewritten graph must reproduce the original's outputs on random normal inputs to this
# tolerance, relative to max(1, the original's largest |output|). Only the order of float32 additions
# differs; measured 9e-8 on the default model.
CHECK_TOLERANCE = 1e-4
CHECK_BATCH = 2
CHECK_SEED = 0
# Size given to a dynamic axis other than the first (batch) one during the check.
CHECK_DYNAMIC_DIM = 32
NAME_TAG = "_subpixel"


class SubpixelError(VerificationError):
    """The sub-pixel rewrite cannot be applied, or the rewritten graph does not compute what the original does."""


@dataclass(frozen=True)
class SubpixelReport:
    """What the rewrite changed and how closely the result matched the original."""

    deconvolutions: int  # ConvTranspose nodes rewritten
    pointwise_fused: int  # of those, how many had their Relu + 1x1 Conv moved before the interleaving
    max_abs_diff: float | None  # None when nothing was rewritten or the check was skipped
    tolerance: float | None

    def to_dict(self) -> dict:
        data: dict = {"deconvolutions": self.deconvolutions, "pointwise_fused": self.pointwise_fused,
                      "form": "4x Conv 2x2 + Concat + DepthToSpace(2, DCR)"}
        if self.max_abs_diff is not None:
            data["check"] = {"max_abs_diff": self.max_abs_diff, "tolerance": self.tolerance,
                             "inputs": f"random normal, batch {CHECK_BATCH}, seed {CHECK_SEED}, ONNX Runtime CPU"}
        return data


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _not_auto_pad(attrs: dict) -> bool:
    return attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")


def _rewritable(node: onnx.NodeProto, initializers: dict[str, onnx.TensorProto]) -> bool:
    if node.op_type != "ConvTranspose" or node.domain not in ("", "ai.onnx") or len(node.input) < 2:
        return False
    if node.input[1] not in initializers:
        return False
    a = _attrs(node)
    if not _not_auto_pad(a) or "output_shape" in a or any(a.get("output_padding", [0, 0])):
        return False
    dims = list(initializers[node.input[1]].dims)
    if len(dims) != 4:
        return False
    kernel = a.get("kernel_shape") or dims[2:]
    actual = {"strides": list(a.get("strides", [1, 1])), "pads": list(a.get("pads", [0, 0, 0, 0])),
              "kernel_shape": list(kernel), "group": a.get("group", 1), "dilations": list(a.get("dilations", [1, 1]))}
    return actual == SUPPORTED and dims[2:] == [4, 4]


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
            or list(a.get("strides", [1, 1])) != [1, 1] or not _not_auto_pad(a)):
        return None
    return relu[0], conv[0]


def _default_opset(model: onnx.ModelProto) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def count_rewritable(model: onnx.ModelProto) -> int:
    """How many ConvTranspose nodes of ``model`` the rewrite would replace (0: nothing to do, e.g. already done)."""
    initializers = {i.name: i for i in model.graph.initializer}
    return sum(_rewritable(n, initializers) for n in model.graph.node)


def rewrite_graph(model: onnx.ModelProto) -> tuple[onnx.ModelProto, SubpixelReport]:
    """A copy of ``model`` with every supported ConvTranspose in sub-pixel form; no numerical check."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    if count_rewritable(model) == 0:
        return out, SubpixelReport(0, 0, None, None)
    if _default_opset(model) < MIN_OPSET:
        raise SubpixelError(f"the sub-pixel rewrite needs opset >= {MIN_OPSET} (DepthToSpace mode), the model has "
                            f"{_default_opset(model)}")
    graph = out.graph
    initializers = {i.name: i for i in graph.initializer}
    users = _consumers(graph)
    outputs = {o.name for o in graph.output}
    graph_inputs = {i.name for i in graph.input}
    absorbed: set[str] = set()  # outputs of the Relu/Conv nodes now applied per phase
    nodes: list[onnx.NodeProto] = []
    count = fused = 0
    for node in graph.node:
        if node.output and node.output[0] in absorbed:
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
                w_name = f"{base}{NAME_TAG}_w{a}{b}"
                graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(kernel), w_name))
                y = f"{base}{NAME_TAG}_y{a}{b}"
                nodes.append(helper.make_node("Conv", [node.input[0], w_name] + ([bias] if bias else []), [y],
                                              name=f"{base}{NAME_TAG}_conv{a}{b}", kernel_shape=[2, 2],
                                              pads=[1 - a, 1 - b, a, b], strides=[1, 1]))
                if tail is not None:
                    _, conv = tail
                    r = f"{y}_relu"
                    nodes.append(helper.make_node("Relu", [y], [r], name=f"{base}{NAME_TAG}_relu{a}{b}"))
                    y = f"{y}_pointwise"
                    nodes.append(helper.make_node("Conv", [r, *conv.input[1:]], [y],
                                                  name=f"{base}{NAME_TAG}_pw{a}{b}", kernel_shape=[1, 1]))
                phases.append(y)
        final = node.output[0]
        if tail is not None:
            fused += 1
            absorbed.update(n.output[0] for n in tail)
            final = tail[1].output[0]
        cat = f"{base}{NAME_TAG}_phases"
        nodes.append(helper.make_node("Concat", phases, [cat], name=f"{base}{NAME_TAG}_concat", axis=1))
        nodes.append(helper.make_node("DepthToSpace", [cat], [final], name=f"{base}{NAME_TAG}_d2s",
                                      blocksize=2, mode="DCR"))
    del graph.node[:]
    graph.node.extend(nodes)
    # Drop the replaced deconvolution weights (initializers also listed as graph inputs stay, being inputs).
    used = {name for n in graph.node for name in n.input} | graph_inputs
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.value_info[:]  # shapes of the replaced tensors changed; ONNX Runtime infers them again
    try:
        onnx.checker.check_model(out)
    except onnx.checker.ValidationError as exc:
        raise SubpixelError(f"the sub-pixel rewrite produced an invalid graph: {exc}") from None
    return out, SubpixelReport(count, fused, None, None)


def _random_inputs(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    initializers = {i.name for i in model.graph.initializer}
    rng = np.random.default_rng(CHECK_SEED)
    feeds = {}
    for inp in model.graph.input:
        if inp.name in initializers:
            continue
        tensor = inp.type.tensor_type
        if tensor.elem_type != onnx.TensorProto.FLOAT:
            raise SubpixelError(f"cannot check the sub-pixel rewrite: input {inp.name} is not float32")
        shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0
                 else (CHECK_BATCH if axis == 0 else CHECK_DYNAMIC_DIM) for axis, d in enumerate(tensor.shape.dim)]
        feeds[inp.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def check_equivalent(original: onnx.ModelProto, rewritten: onnx.ModelProto,
                     tolerance: float = CHECK_TOLERANCE) -> float:
    """Largest |difference| of the two graphs' outputs on random inputs; SubpixelError beyond ``tolerance``
    (relative to max(1, the original's largest |output|))."""
    feeds = _random_inputs(original)
    reference, candidate = _run(original, feeds), _run(rewritten, feeds)
    worst = 0.0
    for ref, cand, out in zip(reference, candidate, original.graph.output):
        if ref.shape != cand.shape:
            raise SubpixelError(f"sub-pixel rewrite changed the shape of output {out.name}: {ref.shape} -> {cand.shape}")
        diff = float(np.abs(ref.astype(np.float64) - cand.astype(np.float64)).max()) if ref.size else 0.0
        allowed = tolerance * max(1.0, float(np.abs(ref).max()) if ref.size else 0.0)
        if not diff <= allowed:  # NaN fails too
            raise SubpixelError(f"the sub-pixel rewrite does not compute what the original graph computes: output "
                                f"{out.name} differs by up to {diff:.3e} on random inputs, more than the allowed "
                                f"{allowed:.3e}; export with --no-subpixel")
        worst = max(worst, diff)
    return worst


def rewrite_with_report(model: onnx.ModelProto, verify: bool = True,
                        tolerance: float = CHECK_TOLERANCE) -> tuple[onnx.ModelProto, SubpixelReport]:
    """The rewritten copy of ``model`` and what changed; with ``verify``, checked against the original first."""
    rewritten, report = rewrite_graph(model)
    if report.deconvolutions == 0:
        logger.info("sub-pixel rewrite: no stride-2 4x4 ConvTranspose to rewrite")
        return rewritten, report
    if not verify:
        return rewritten, report
    diff = check_equivalent(model, rewritten, tolerance)
    report = SubpixelReport(report.deconvolutions, report.pointwise_fused, diff, tolerance)
    logger.info("sub-pixel rewrite: %d ConvTranspose node(s) as Conv + DepthToSpace (%d with the pointwise Conv "
                "moved before the interleaving); max |difference| %.2e on random inputs", report.deconvolutions,
                report.pointwise_fused, diff)
    return rewritten, report


def subpixel_rewrite(model: onnx.ModelProto, verify: bool = True) -> onnx.ModelProto:
    """``model`` with its stride-2 4x4 deconvolutions in sub-pixel form, checked numerically unless ``verify``
    is False; raises SubpixelError when the rewritten graph does not match. ``model`` itself is not changed."""
    return rewrite_with_report(model, verify)[0]

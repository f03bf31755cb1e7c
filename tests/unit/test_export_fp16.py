"""FP16 conversion with onnx alone: float32 edges, float16 inside, ONNX Runtime agrees with FP32."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from export.variants import convert_fp16  # noqa: E402


def small_graph() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.2, s).astype(np.float32), n)
             for n, s in (("w1", (8, 3, 3, 3)), ("b1", (8,)), ("w2", (8, 4, 4, 4)), ("w3", (5, 4, 1, 1)))]
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["a"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["b"]),
        helper.make_node("Constant", [], ["half"], value=numpy_helper.from_array(np.array(0.5, np.float32), "half")),
        helper.make_node("Mul", ["b", "half"], ["c"]),
        helper.make_node("ConvTranspose", ["c", "w2"], ["d"], kernel_shape=[4, 4], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["d", "w3"], ["heatmaps"], kernel_shape=[1, 1]),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 16, 12])],
                              [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, ["batch", 5, 16, 12])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def test_fp16_keeps_float32_io_and_matches():
    model = small_graph()
    half = convert_fp16(model)
    assert half.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert half.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert all(i.data_type == TensorProto.FLOAT16 for i in half.graph.initializer)
    assert [n.op_type for n in half.graph.node].count("Cast") == 2
    # The original is untouched.
    assert all(i.data_type == TensorProto.FLOAT for i in model.graph.initializer)
    x = np.random.default_rng(1).normal(size=(2, 3, 16, 12)).astype(np.float32)
    ref, out = run(model, x), run(half, x)
    assert out.dtype == np.float32 and out.shape == ref.shape
    np.testing.assert_allclose(out, ref, atol=2e-2 * max(1.0, np.abs(ref).max()))
    assert np.abs(out - ref).max() > 0  # it really computed in half precision


def test_values_beyond_fp16_range_are_clipped():
    model = small_graph()
    model.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.full(8, 1e6, np.float32), "b1"))
    half = convert_fp16(model)
    b1 = numpy_helper.to_array(next(i for i in half.graph.initializer if i.name == "b1"))
    assert np.isfinite(b1).all() and b1.max() == np.finfo(np.float16).max

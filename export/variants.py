"""Reduced-precision variants of an exported FP32 model: FP16 (for CUDA) and INT8 static QDQ (for CPUs).

FP16 is converted here with onnx itself (onnxconverter-common is not a dependency): float initializers and
constants become float16, the graph computes in float16, and Cast nodes at the edges keep the model's
input and output float32, so the runtime's preprocessing and decoding are the same for every variant.

INT8 uses ONNX Runtime's static quantisation in QDQ format with uint8 activations and per-channel int8
weights, calibrated with min/max on real images: on this machine's CPU it ran 1.5x faster than FP32, while
dynamic quantisation made convolutions 2.5x slower. Transposed convolutions stay in float (see KEEP_FLOAT_OPS).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tqdm import tqdm

logger = logging.getLogger(__name__)

FP16_MAX = float(np.finfo(np.float16).max)
# ONNX Runtime's CPU provider has no integer ConvTranspose: a quantised one runs as Dequantize -> float
# ConvTranspose -> Quantize, pure overhead. Kept in float, INT8 took 5.4 instead of 6.8 ms CPU per image
# (default MobileNetV2 model) and 37 instead of 41 ms (ResNet-50 paper preset), 1 thread, measured here.
KEEP_FLOAT_OPS = ("ConvTranspose",)
# Inputs that ONNX requires to stay float32 whatever the compute type (op type -> input indices).
_FLOAT32_ONLY_INPUTS = {"Resize": (2,), "Upsample": (1,)}
_FP16_SUFFIX = "_fp16"
CALIBRATION_BATCH = 8


def float_kept_ops(fp32_path: str | os.PathLike[str]) -> list[str]:
    """The op types of ``fp32_path`` that quantisation leaves in float (none once the deconvolutions are sub-pixel)."""
    present = {n.op_type for n in onnx.load(str(fp32_path), load_external_data=False).graph.node}
    return [op for op in KEEP_FLOAT_OPS if op in present]


class VariantError(RuntimeError):
    """A variant could not be produced for this graph."""


def _to_fp16_tensor(tensor: TensorProto) -> TensorProto:
    array = numpy_helper.to_array(tensor)
    overflow = np.abs(array) > FP16_MAX
    if overflow.any():
        logger.warning("fp16: %d values of %s exceed the float16 range and are clipped", int(overflow.sum()), tensor.name)
        array = np.clip(array, -FP16_MAX, FP16_MAX)
    return numpy_helper.from_array(array.astype(np.float16), tensor.name)


def convert_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """A float16 copy of ``model`` whose graph input and output stay float32."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    for node in graph.node:
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise VariantError(f"fp16 conversion does not handle control flow (node {node.name} {node.op_type})")
    keep_fp32 = {node.input[i] for node in graph.node for i in _FLOAT32_ONLY_INPUTS.get(node.op_type, ())
                 if i < len(node.input)}
    for i, init in enumerate(graph.initializer):
        if init.data_type == TensorProto.FLOAT and init.name not in keep_fp32:
            graph.initializer[i].CopyFrom(_to_fp16_tensor(init))
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == TensorProto.FLOAT and node.op_type in ("Constant", "ConstantOfShape"):
                attr.t.CopyFrom(_to_fp16_tensor(attr.t))
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.FLOAT16
    for vi in graph.value_info:
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT:
            vi.type.tensor_type.elem_type = TensorProto.FLOAT16

    # Float32 edges: Cast the input to float16 on the way in and the outputs back to float32 on the way out.
    new_nodes = []
    for inp in graph.input:
        if inp.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        inner = inp.name + _FP16_SUFFIX
        for node in graph.node:
            node.input[:] = [inner if name == inp.name else name for name in node.input]
        new_nodes.append(helper.make_node("Cast", [inp.name], [inner], to=TensorProto.FLOAT16, name=inner + "_cast"))
    tail = []
    for outp in graph.output:
        if outp.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        inner = outp.name + _FP16_SUFFIX
        for node in graph.node:
            node.output[:] = [inner if name == outp.name else name for name in node.output]
            node.input[:] = [inner if name == outp.name else name for name in node.input]
        tail.append(helper.make_node("Cast", [inner], [outp.name], to=TensorProto.FLOAT, name=inner + "_cast"))
    nodes = new_nodes + list(graph.node) + tail
    del graph.node[:]
    graph.node.extend(nodes)
    try:
        onnx.checker.check_model(out, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise VariantError(f"fp16 conversion produced an invalid graph: {exc}") from None
    return out


class _CalibrationReader:
    """Feeds calibration batches to ONNX Runtime's quantiser, with a progress bar."""

    def __init__(self, input_name: str, tensors: np.ndarray, progress: bool) -> None:
        self.input_name = input_name
        self.tensors = tensors
        self._bar = tqdm(total=len(tensors), desc="int8 calibration", unit="img", disable=not progress)
        self._batches = self._iterate()

    def _iterate(self) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(self.tensors), CALIBRATION_BATCH):
            batch = self.tensors[start:start + CALIBRATION_BATCH]
            self._bar.update(len(batch))
            yield {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)}
        self._bar.close()

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def rewind(self) -> None:
        self._batches = self._iterate()


def quantize_int8(fp32_path: str | os.PathLike[str], output_path: str | os.PathLike[str],
                  calibration_tensors: np.ndarray, progress: bool = True) -> Path:
    """Static QDQ INT8 (uint8 activations, per-channel int8 weights) calibrated on ``calibration_tensors``."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calibration_tensors) == 0:
        raise ValueError("int8 quantisation needs at least one calibration image")
    fp32_path, output_path = Path(fp32_path), Path(output_path)
    input_name = onnx.load(str(fp32_path), load_external_data=False).graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="rehab-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # Shape inference and graph clean-up first, as ONNX Runtime's quantisation guide recommends.
        try:
            quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=False)
        except TypeError:
            # ORT's symbolic shape inference gives up on ReduceMean/ReduceMax with axes as an input (opset 18,
            # the presence head's pooling); ONNX's own shape inference handles them.
            logger.info("int8: symbolic shape inference failed on this graph; using ONNX shape inference")
            quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        keep_float = [n.name for n in onnx.load(str(prepared)).graph.node if n.op_type in KEEP_FLOAT_OPS]
        quantize_static(str(prepared), str(output_path),
                        calibration_data_reader=_CalibrationReader(input_name, calibration_tensors, progress),
                        quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        per_channel=True, calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=keep_float,
                        use_external_data_format=False)
    return output_path

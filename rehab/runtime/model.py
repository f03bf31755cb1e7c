"""The public inference API: ``PoseModel.load(path).predict(image_bgr, bbox_xyxy) -> Pose``.

preprocess -> infer -> postprocess are separate functions; ONNX Runtime is only the middle one. All
conventions (input size, normalisation, joint names, flip pairs, heatmap stride) come from the model's own
metadata (``ModelInfo``); the maths comes from rehab.core, the one copy that training uses too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import onnxruntime as ort

from rehab.core.heatmaps import SUBPIXEL_SHIFT, decode_to_image, merge_flip
from rehab.core.transforms import affine_matrix, box_to_center_scale, letterbox
from rehab.runtime.image import as_bgr_frame, conversion_note
from rehab.runtime.metadata import PRESENCE_OUTPUT_NAME, ModelInfo, from_metadata_props
from rehab.runtime.session import ProviderSpec, create_session

logger = logging.getLogger(__name__)

DEFAULT_MODEL_PATH = Path(__file__).resolve().parents[1] / "models" / "default.onnx"
# Images per ONNX Runtime call in predict_batch: bounds memory, and larger batches gain nothing on a CPU.
MAX_BATCH = 16


class Keypoint(NamedTuple):
    x_px: float
    y_px: float
    score: float


@dataclass(frozen=True, eq=False)
class Pose:
    """One person's keypoints in image pixels (x, y), their heatmap scores and the joint names.

    ``presence`` is the model's probability (sigmoid of its presence logit, in [0, 1]) that a person is in the
    crop at all; None for a model without a presence output. Compare it with ``ModelInfo.presence_threshold``.
    """

    keypoints_px: np.ndarray  # (K, 2) float64
    scores: np.ndarray  # (K,) float32, heatmap peak values (roughly 0-1, not calibrated probabilities)
    joint_names: tuple[str, ...]
    # Probability that a person is in the region the model looked at; None for a model without presence output.
    presence: float | None = None

    def __post_init__(self) -> None:
        kp = np.array(self.keypoints_px, dtype=np.float64)
        scores = np.array(self.scores, dtype=np.float32)
        names = tuple(self.joint_names)
        if kp.shape != (len(names), 2) or scores.shape != (len(names),):
            raise ValueError(f"Pose needs keypoints_px ({len(names)}, 2) and scores ({len(names)},) for "
                             f"{len(names)} joint names, got {kp.shape} and {scores.shape}")
        if self.presence is not None:
            presence = float(self.presence)
            if not 0.0 <= presence <= 1.0:
                raise ValueError(f"Pose presence must be a probability in [0, 1] or None, got {self.presence!r}")
            object.__setattr__(self, "presence", presence)
        kp.setflags(write=False)
        scores.setflags(write=False)
        object.__setattr__(self, "keypoints_px", kp)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "joint_names", names)

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    def index(self, name: str) -> int:
        try:
            return self.joint_names.index(name)
        except ValueError:
            raise KeyError(f"joint {name!r} is not in this pose; joints: {', '.join(self.joint_names)}") from None

    def get(self, name: str) -> Keypoint:
        """The named joint as (x_px, y_px, score)."""
        i = self.index(name)
        return Keypoint(float(self.keypoints_px[i, 0]), float(self.keypoints_px[i, 1]), float(self.scores[i]))

    def to_dict(self) -> dict[str, dict[str, float]]:
        """{joint: {"x_px", "y_px", "score"}}, JSON-ready."""
        return {name: self.get(name)._asdict() for name in self.joint_names}


# ----------------------------------------------------------------------------------------------
# preprocess -> infer -> postprocess


def person_center_scale(image_shape: Sequence[int], bbox_xyxy, info: ModelInfo) -> tuple[np.ndarray, np.ndarray]:
    """Center/scale of the crop for a person box, or of the whole image letterboxed when ``bbox_xyxy`` is None."""
    if bbox_xyxy is None:
        return letterbox((image_shape[1], image_shape[0]), info.input_size)
    box = np.asarray(bbox_xyxy, dtype=np.float64).reshape(-1)
    if box.shape != (4,):
        raise ValueError(f"bbox_xyxy must be 4 numbers (x1, y1, x2, y2) in image pixels, got {bbox_xyxy!r}")
    return box_to_center_scale(box, aspect_ratio=info.aspect_ratio, padding=info.box_padding)


def preprocess(image_bgr: np.ndarray, center, scale, info: ModelInfo) -> tuple[np.ndarray, np.ndarray]:
    """The network input (1, 3, h, w) float32 for the crop center/scale, and the image->crop affine (2, 3).
    ``image_bgr`` is a checked image (rehab.runtime.image.as_bgr_frame; predict checks its input once)."""
    w, h = info.input_size
    affine = affine_matrix(center, scale, 0.0, (w, h))
    crop = cv2.warpAffine(image_bgr, affine, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if info.channel_order == "RGB":
        crop = crop[:, :, ::-1]
    std = np.asarray(info.std, dtype=np.float32)
    mean = np.asarray(info.mean, dtype=np.float32)
    # (pixels / range - mean) / std folded into one multiply-add.
    tensor = crop.astype(np.float32) * (1.0 / (info.pixel_range * std)) - mean / std
    return np.ascontiguousarray(tensor.transpose(2, 0, 1)[None]), affine


def _static_dims(shape: Sequence) -> list[int | None]:
    return [d if isinstance(d, int) and d > 0 else None for d in shape]


def heatmap_output_name(session: ort.InferenceSession) -> str:
    """The heatmap output: the first output that is not the presence logit."""
    names = [o.name for o in session.get_outputs()]
    others = [n for n in names if n != PRESENCE_OUTPUT_NAME]
    return others[0] if others else names[0]


def infer(session: ort.InferenceSession, tensor: np.ndarray) -> np.ndarray:
    """Heatmaps (N, K, H, W) float32 for a preprocessed batch (N, 3, h, w); checks the input first."""
    return infer_outputs(session, tensor)[0]


def infer_outputs(session: ort.InferenceSession, tensor: np.ndarray,
                  presence_output: str = "") -> tuple[np.ndarray, np.ndarray | None]:
    """(heatmaps (N, K, H, W), presence logits (N, 1) or None) for a preprocessed batch (N, 3, h, w);
    ``presence_output`` names the logit output (ModelInfo.presence_output; "" = do not compute it)."""
    spec = session.get_inputs()[0]
    batch = np.asarray(tensor)
    expected = _static_dims(spec.shape)
    shown = "(" + ", ".join("N" if d is None else str(d) for d in expected) + ")"
    if batch.ndim != len(expected) or any(e is not None and e != a for e, a in zip(expected, batch.shape)):
        raise ValueError(f"model input {spec.name!r} must have shape {shown}, got {batch.shape}: "
                         "use preprocess() to crop and resize images to the model's input size")
    if batch.dtype != np.float32:
        batch = batch.astype(np.float32)
    names = [heatmap_output_name(session)] + ([presence_output] if presence_output else [])
    out = session.run(names, {spec.name: batch})
    return out[0], (out[1] if presence_output else None)


def presence_probability(logits: np.ndarray) -> np.ndarray:
    """sigmoid(logit) per crop, (N, 1) -> (N,), computed without overflow for large |logits|."""
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    return np.where(z >= 0, 1.0 / (1.0 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1.0 + np.exp(-np.abs(z))))


def postprocess(heatmaps: np.ndarray, affine: np.ndarray, info: ModelInfo, presence: float | None = None) -> Pose:
    """Decode one person's heatmaps (K, H, W) or (1, K, H, W) to a Pose in image pixels (``presence``: the
    crop's presence probability, if the model has one)."""
    hm = np.asarray(heatmaps)
    if hm.ndim == 4 and hm.shape[0] == 1:
        hm = hm[0]
    expected = (info.num_joints, info.heatmap_size[1], info.heatmap_size[0])
    if hm.shape != expected:
        raise ValueError(f"heatmaps must have shape {expected} (K, H, W) for this model, got {np.shape(heatmaps)}")
    image_px, scores = decode_to_image(hm, affine, info.input_size, info.heatmap_size, info.heatmap_encoding,
                                       info.heatmap_decoding, info.sigma)
    return Pose(keypoints_px=image_px, scores=scores, joint_names=info.joint_names, presence=presence)


# ----------------------------------------------------------------------------------------------
# the model


class PoseModel:
    """A self-describing ONNX pose model. Thread-safe for predict (ONNX Runtime sessions are)."""

    def __init__(self, session: ort.InferenceSession, info: ModelInfo, path: Path, providers: tuple[str, ...]):
        self.session = session
        self.info = info
        self.path = path
        self.providers = providers
        # Conversions of the input (grey, BGRA) already logged by this model: each is said once, not per frame.
        self._noted: set[str] = set()
        self._check_io()

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, providers: str | Sequence[ProviderSpec] = "auto",
             threads: int | None = None, allow_spinning: bool = False, **session_kwargs) -> PoseModel:
        """Load ``path`` (None: the default model shipped in rehab/models/default.onnx)."""
        if path is None:
            path = DEFAULT_MODEL_PATH
            if not path.is_file():
                raise FileNotFoundError(
                    f"the default model is not built yet: {path} does not exist. Build it from a trained "
                    f"checkpoint with `rehab export CHECKPOINT --output {path}`, or load another model with "
                    "PoseModel.load('path/to/model.onnx')")
        path = Path(path)
        session, active = create_session(path, providers=providers, threads=threads, allow_spinning=allow_spinning,
                                         **session_kwargs)
        props = session.get_modelmeta().custom_metadata_map
        try:
            info = from_metadata_props(props, source=str(path))
        except ValueError as exc:
            if not any(k.startswith("rehab.") for k in props):
                raise
            # Some keys but not all: a file cut short loses its metadata (stored last) before its graph.
            raise ValueError(f"{exc} (if the file was copied or downloaded, it may be truncated)") from None
        if info.subpixel_shift != SUBPIXEL_SHIFT:
            logger.warning("model %s was validated with a subpixel shift of %s but rehab.core decodes with %s; "
                           "keypoints may differ slightly from the exported evaluation", path, info.subpixel_shift,
                           SUBPIXEL_SHIFT)
        return cls(session, info, path, active)

    def _check_io(self) -> None:
        w, h = self.info.input_size
        inp = _static_dims(self.session.get_inputs()[0].shape)
        outputs = {o.name: o for o in self.session.get_outputs()}
        heatmap_spec = outputs[heatmap_output_name(self.session)]
        out = _static_dims(heatmap_spec.shape)
        if self.info.has_presence:
            spec = outputs.get(self.info.presence_output)
            if spec is None:
                raise ValueError(f"model {self.path}: its metadata names a presence output "
                                 f"{self.info.presence_output!r} but the graph's outputs are {list(outputs)}")
            dims = _static_dims(spec.shape)
            if len(dims) != 2 or dims[1] not in (None, 1):
                raise ValueError(f"model {self.path}: presence output shape {spec.shape} is not (N, 1)")
        hw, hh = self.info.heatmap_size
        if len(inp) != 4 or any(e is not None and e != a for e, a in zip(inp[1:], (3, h, w))):
            raise ValueError(f"model {self.path}: input shape {self.session.get_inputs()[0].shape} does not match its "
                             f"metadata (N, 3, {h}, {w})")
        if len(out) != 4 or any(e is not None and e != a for e, a in zip(out[1:], (self.info.num_joints, hh, hw))):
            raise ValueError(f"model {self.path}: output shape {heatmap_spec.shape} does not match "
                             f"its metadata (N, {self.info.num_joints}, {hh}, {hw})")

    def __repr__(self) -> str:
        return (f"PoseModel({str(self.path)!r}, {self.info.name}, {self.info.precision}, "
                f"input {self.info.input_size[0]}x{self.info.input_size[1]}, providers={list(self.providers)})")

    @property
    def has_presence(self) -> bool:
        return self.info.has_presence

    def _checked(self, image: np.ndarray, name: str) -> np.ndarray:
        checked = as_bgr_frame(image, name)
        note = conversion_note(image)
        if note is not None and note not in self._noted:
            self._noted.add(note)
            logger.info("%s: %s", name, note)
        return checked

    def heatmaps(self, batch: np.ndarray, flip_test: bool | None = None) -> np.ndarray:
        """Heatmaps (N, K, H, W) of a preprocessed batch, averaged with the mirrored batch when flip testing."""
        return self.outputs(batch, flip_test, presence=False)[0]

    def outputs(self, batch: np.ndarray, flip_test: bool | None = None,
                presence: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """(heatmaps (N, K, H, W), presence logits (N,) or None) of a preprocessed batch. With flip testing the
        heatmaps are merged with the mirrored batch's and the two logits averaged."""
        flip = self.info.flip_test if flip_test is None else bool(flip_test)
        name = self.info.presence_output if presence and self.info.has_presence else ""
        if not flip:
            hm, logits = infer_outputs(self.session, batch, name)
            return hm, None if logits is None else logits.reshape(-1)
        both, logits = infer_outputs(self.session, np.concatenate([batch, batch[..., ::-1]], axis=0), name)
        n = batch.shape[0]
        merged = merge_flip(both[:n], both[n:], self.info.flip_permutation, shift=self.info.flip_shift)
        if logits is None:
            return merged, None
        flat = logits.reshape(-1)
        return merged, (flat[:n] + flat[n:]) / 2.0

    def predict(self, image_bgr: np.ndarray, bbox_xyxy=None, flip_test: bool | None = None) -> Pose:
        """The pose of the person in ``bbox_xyxy`` (image pixels), or in the whole image when None.

        ``flip_test`` None uses the model's default (its metadata); flip testing doubles the cost.
        """
        return self.predict_checked(self._checked(image_bgr, "image"), bbox_xyxy, flip_test)

    def predict_batch(self, images: Sequence[np.ndarray], boxes: Sequence | None = None,
                      flip_test: bool | None = None) -> list[Pose]:
        """One Pose per (image, box); ``boxes`` None or an entry None means the whole image."""
        images = [self._checked(image, f"images[{i}]") for i, image in enumerate(images)]
        return self.predict_batch_checked(images, boxes, flip_test)

    def predict_checked(self, image: np.ndarray, bbox_xyxy=None, flip_test: bool | None = None) -> Pose:
        """:meth:`predict` for an image its caller has already checked (rehab.runtime.image.as_bgr_frame)."""
        center, scale = person_center_scale(image.shape, bbox_xyxy, self.info)
        tensor, affine = preprocess(image, center, scale, self.info)
        hm, logits = self.outputs(tensor, flip_test)
        presence = None if logits is None else float(presence_probability(logits)[0])
        return postprocess(hm[0], affine, self.info, presence)

    def predict_batch_checked(self, images: Sequence[np.ndarray], boxes: Sequence | None = None,
                              flip_test: bool | None = None) -> list[Pose]:
        """:meth:`predict_batch` for images their caller has already checked."""
        images = list(images)
        boxes = [None] * len(images) if boxes is None else list(boxes)
        if len(boxes) != len(images):
            raise ValueError(f"boxes must have one entry per image: {len(images)} images, {len(boxes)} boxes")
        poses: list[Pose] = []
        for start in range(0, len(images), MAX_BATCH):
            tensors, affines = [], []
            for image, box in zip(images[start:start + MAX_BATCH], boxes[start:start + MAX_BATCH]):
                center, scale = person_center_scale(image.shape, box, self.info)
                tensor, affine = preprocess(image, center, scale, self.info)
                tensors.append(tensor)
                affines.append(affine)
            hm, logits = self.outputs(np.concatenate(tensors, axis=0), flip_test)
            probs = [None] * len(hm) if logits is None else [float(p) for p in presence_probability(logits)]
            poses.extend(postprocess(h, a, self.info, p) for h, a, p in zip(hm, affines, probs))
        return poses

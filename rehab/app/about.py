"""The Settings & about page in a therapist's words: which model, how accurate, which device runs it and why.

Pure functions of the model's metadata and ONNX Runtime's provider lists (no Streamlit), so that the page,
the server log and the tests read the same sentences. Every number comes from the model file's metadata
(rehab.runtime.metadata.ModelInfo); nothing is measured here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

CPU = "CPUExecutionProvider"
GPU_NAMES = {"CUDAExecutionProvider": "CUDA", "TensorrtExecutionProvider": "TensorRT"}
PRECISION_WORDS = {
    "fp32": "full precision (FP32)",
    "fp16": "half precision (FP16): smaller, for GPUs",
    "int8": "8-bit (INT8): smaller and faster on processors, slightly less accurate",
}
# Data set kinds (rehab.pose_annotations) as "<what the photos show> (<name>)".
DATASET_WORDS = {
    "lsp": "photos of people doing sport (LSP)",
    "lspet": "photos of people doing sport (LSP Extended)",
    "mpii": "photos of everyday activities (MPII)",
    "coco": "everyday photos (COCO)",
    "video": "frames of lab videos (Pose2Sim)",
    "synthetic": "generated images with nobody in them",
    "mined": "person-free parts of video frames",
}
BACKBONE_WORDS = {"mobilenet_v2": "small, fast MobileNetV2 network", "resnet50": "large ResNet-50 network",
                  "resnet101": "large ResNet-101 network", "resnet152": "large ResNet-152 network"}
# PCK@0.2 bands for the one-word verdict (per cent of limb joints placed within 0.2 torso lengths). Human
# annotators agree on roughly 90+ per cent of joints at this tolerance on LSP.
ACCURACY_BANDS = ((90.0, "high"), (75.0, "moderate"), (0.0, "limited"))
# A git-describe suffix: "+g<commit>" and an optional ".dirty" (built from a working tree with changes).
_VERSION_SUFFIX = re.compile(r"^(?P<release>[^+]+)(\+g(?P<commit>[0-9a-f]{7,40}))?(?P<dirty>\.dirty)?$")


def clean_version(version: str | None) -> str:
    """The release a person reads: "0.1.0+g60f6a449e4c7.dirty" -> "0.1.0" ("" when unknown). The build
    (commit, local changes) stays in the technical details."""
    if not version:
        return ""
    match = _VERSION_SUFFIX.match(version.strip())
    return match["release"] if match else version.strip()


def readable_date(iso: str | None) -> str:
    """ "2026-11-26T12:08:46+00:00" -> "26 November 2026"; the text as given when it is not a date."""
    if not iso:
        return ""
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    return f"{when.day} {when:%B %Y}"


# ----------------------------------------------------------------------------------------------
# accuracy


@dataclass(frozen=True)
class Accuracy:
    verdict: str  # "high", "moderate", "limited"
    pck: float  # per cent of limb joints within 0.2 torso lengths
    images: int | None
    dataset: str  # in words
    sentence: str


def _dataset_from_sets(sets: Any) -> tuple[str, int | None]:
    """(dataset in words, images) from a metrics "val_sets" list of dataset specs."""
    if not isinstance(sets, Sequence) or not sets or not isinstance(sets[0], Mapping):
        return "", None
    first = sets[0]
    kind = str(first.get("kind") or "")
    limit = first.get("limit") or first.get("count")
    return DATASET_WORDS.get(kind, kind.upper()), (int(limit) if limit else None)


def _dataset_from_text(text: str) -> str:
    """ "lsp test (im1001-im2000), whole image ..." -> "photos of people doing sport (LSP)"."""
    kind = text.split()[0].lower() if text else ""
    return DATASET_WORDS.get(kind, text.split(",")[0])


def accuracy(metrics: Mapping[str, Any], variant: Mapping[str, Any]) -> Accuracy | None:
    """How accurate the model is, from its metadata: this very file on the LSP test set when it was measured
    there (``metrics["lsp_test_pck@0.2"]``: images no training step or checkpoint choice saw), else the export's
    evaluation of the file (``variant["eval"]``), else the training's validation figure. None when the file
    carries none of them."""
    evaluation = variant.get("eval") if isinstance(variant, Mapping) else None
    pck = images = None
    dataset = ""
    if _finite(metrics.get("lsp_test_pck@0.2")):
        pck = float(metrics["lsp_test_pck@0.2"])
        images = int(metrics["lsp_test_images"]) if metrics.get("lsp_test_images") else None
        dataset = DATASET_WORDS["lsp"]
    elif isinstance(evaluation, Mapping) and _finite(evaluation.get("pck@0.2")):
        pck = float(evaluation["pck@0.2"])
        images = int(evaluation["images"]) if evaluation.get("images") else None
        dataset = _dataset_from_text(str(evaluation.get("eval_set") or ""))
    else:
        key = next((k for k in metrics if "pck@0.2" in k.lower() and _finite(metrics[k])), None)
        if key is None:
            return None
        pck = float(metrics[key])
        dataset, images = _dataset_from_sets(metrics.get("val_sets"))
    verdict = next(word for floor, word in ACCURACY_BANDS if pck >= floor)
    where = f"On {images} test images" if images else "On its test images"
    where += f": {dataset}" if dataset else ""
    sentence = (f"Accuracy is {verdict}. {where}, {pck:.0f} of every 100 arm and leg joints were placed within a "
                f"fifth of the torso's length of where a person had marked them (PCK@0.2 = {pck:.1f} %). "
                "Joint angles are estimates from the video: check a surprising value on the video itself.")
    return Accuracy(verdict=verdict, pck=pck, images=images, dataset=dataset, sentence=sentence)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def file_check(precision: str, variant: Mapping[str, Any]) -> str:
    """What the export checked on this file, in words ("" when nothing was recorded)."""
    if not isinstance(variant, Mapping):
        return ""
    parts = []
    verified = variant.get("verified_against_torch")
    if isinstance(verified, Mapping) and verified.get("images"):
        agreement = verified.get("keypoint_agreement")
        diff = verified.get("max_keypoint_diff_px")
        same = f"{agreement:.0%} of the joints" if _finite(agreement) else "the joints"
        parts.append(f"checked after export against the trained network on {verified['images']} images: "
                     f"{same} in the same place" + (f" (largest difference {diff:.1f} px)" if _finite(diff) else ""))
    if precision != "fp32" and _finite(variant.get("drift_pp")) and _finite(variant.get("pck_fp32")):
        # The export's check runs on its own images (not the test set the accuracy line quotes): name them, so
        # the two percentages are not read as one comparison.
        evaluation = variant.get("eval") if isinstance(variant.get("eval"), Mapping) else {}
        on = ""
        if evaluation.get("images") and _finite(evaluation.get("pck@0.2")):
            on = (f" on the export's check ({evaluation['images']} images: {evaluation['pck@0.2']:.1f} % vs "
                  f"{variant['pck_fp32']:.1f} %)")
        parts.append(f"accuracy {variant['drift_pp']:+.1f} points against the full-precision model"
                     + (on or f" ({variant['pck_fp32']:.1f} %)"))
    return "; ".join(parts).capitalize() + "." if parts else ""


def training_words(training: Mapping[str, Any]) -> str:
    """The data the model was (last) trained on, in words ("" when unknown)."""
    data = training.get("data") if isinstance(training, Mapping) else None
    sets = data.get("train") if isinstance(data, Mapping) else None
    if not isinstance(sets, Sequence) or not sets:
        return str(data) if isinstance(data, str) else ""
    names = []
    for spec in sets:
        if isinstance(spec, Mapping):
            kind = str(spec.get("kind") or "")
            split = {"train": "training part", "test": "test part", "all": "all"}.get(str(spec.get("split")),
                                                                                    spec.get("split"))
            names.append(DATASET_WORDS.get(kind, kind.upper()) + (f", {split}" if split else ""))
    return "; ".join(dict.fromkeys(names))


def flat_items(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    """A nested mapping as (dotted key, value) rows for the technical details, leaving out empty values."""
    rows: list[tuple[str, str]] = []
    if isinstance(data, Mapping):
        for key, value in data.items():
            rows += flat_items(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(data, (list, tuple)) and any(isinstance(v, (Mapping, list, tuple)) for v in data):
        for i, value in enumerate(data):
            rows += flat_items(value, f"{prefix}[{i}]")
    elif data is not None and data != "" and data != [] and not (isinstance(data, float) and not math.isfinite(data)):
        text = ", ".join(str(v) for v in data) if isinstance(data, (list, tuple)) else str(data)
        rows.append((prefix, f"{data:.4g}" if isinstance(data, float) else text))
    return rows


# ----------------------------------------------------------------------------------------------
# device


@dataclass(frozen=True)
class DeviceReport:
    provider: str  # ONNX Runtime's name of the provider actually running the model
    device: str  # in words
    why: str
    gpu_unavailable: bool  # a GPU provider is installed but the model is not on it

    @property
    def line(self) -> str:
        return f"The pose model runs on {self.device} ({self.provider}): {self.why}."


def device_report(active: Sequence[str], available: Sequence[str], gpu_visible: bool) -> DeviceReport:
    """Which device runs the model and why, from the providers the session really uses (``active``), those
    the onnxruntime build offers (``available``) and whether an NVIDIA GPU device is visible."""
    provider = active[0] if active else CPU
    installed = [GPU_NAMES[p] for p in available if p in GPU_NAMES]
    if provider in GPU_NAMES:
        return DeviceReport(provider, f"the graphics card (GPU, {GPU_NAMES[provider]})",
                            "a usable NVIDIA GPU was found", gpu_unavailable=False)
    device = "the processor (CPU)"
    if not installed:
        return DeviceReport(provider, device, "this installation of ONNX Runtime has no GPU support",
                            gpu_unavailable=False)
    gpus = " and ".join(installed)
    if not gpu_visible:
        why = f"GPU support ({gpus}) is installed, but no NVIDIA GPU was found on this machine"
    else:
        why = (f"a GPU was found, but {gpus} could not be started on it (its libraries are missing or of the "
               "wrong version; ONNX Runtime's error is in the server log just before this line)")
    return DeviceReport(provider, device, why, gpu_unavailable=True)


def thread_words(threads: int, cores: int) -> str:
    if threads > 0:
        return f"{threads} of the {cores} processor cores"
    return f"all {cores} processor cores (ONNX Runtime's default)"

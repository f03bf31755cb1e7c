"""Checkpoint -> verified, self-describing ONNX file, plus optional FP16 and INT8 variants.

Steps: export (dynamo, dynamic batch) -> unless ``subpixel`` is off, rewrite the stride-2 deconvolutions in
sub-pixel form (export.subpixel: same maths, faster, and quantisable; checked against the original graph on
random inputs, recorded in the metadata's ``graph_rewrites``) -> write with metadata -> run ONNX Runtime and
torch on real LSP images and fail unless they agree within the tolerances of export.verify -> PCK@0.2 of the
file on held-out LSP test images -> variants (made from the written, rewritten file), each evaluated the same
way; its PCK drift against FP32 is printed and stored in its metadata, and an INT8 file that loses more than
``max_int8_drop`` points is not written unless forced.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from export.describe import DEFAULT_PRESENCE_THRESHOLD, info_from_config
from export.lsp_check import EVAL_SETS, PCKSummary, calibration_inputs, eval_records, lsp_pck, lsp_records, network_inputs, person_free_inputs
from export.onnx_export import (
    DEFAULT_OPSET,
    attach_metadata,
    has_presence_head,
    save_single_file,
    set_file_metadata,
    torch_to_onnx,
)
from export.subpixel import rewrite_with_report
from export.variants import convert_fp16, float_kept_ops, quantize_int8
from export.verify import (
    FP16_HEATMAP_TOLERANCE,
    FP16_MIN_KEYPOINT_AGREEMENT,
    FP16_MIN_PRESENCE_AGREEMENT,
    FP32_HEATMAP_TOLERANCE,
    FP32_MIN_KEYPOINT_AGREEMENT,
    Agreement,
    PresenceAgreement,
    compare_heatmaps,
    compare_presence,
    require_agreement,
    require_presence_agreement,
)
from rehab.core.files import sha256_file
from rehab.runtime.metadata import ModelInfo
from rehab.runtime.model import PoseModel, infer, infer_outputs

logger = logging.getLogger(__name__)

# An INT8 file may lose at most this many PCK@0.2 points against FP32 on the held-out images. Evaluation
# noise on a few hundred images is about +-1 point, so 2 points flags a real loss, not noise.
MAX_INT8_PCK_DROP = 2.0
VERIFY_BATCH = 8
DEFAULT_VERIFY_IMAGES = 16
DEFAULT_EVAL_IMAGES = 300
DEFAULT_CALIBRATION_IMAGES = 128
# An INT8 file's presence decision may differ from FP32's on at most this share of the verification crops
# before a warning (quantisation moves logits near the threshold; the PCK gate stays the hard one).
INT8_MIN_PRESENCE_AGREEMENT = 0.95


class DriftError(RuntimeError):
    """A variant loses more accuracy than allowed; ``result`` holds what was measured."""

    def __init__(self, message: str, result: VariantResult) -> None:
        super().__init__(message)
        self.result = result
        self.export: ExportResult | None = None  # what was written before the refusal, set by export_model


@dataclass(frozen=True)
class ExportOptions:
    opset: int = DEFAULT_OPSET
    verify_images: int = DEFAULT_VERIFY_IMAGES
    eval_images: int = DEFAULT_EVAL_IMAGES  # 0 skips the PCK evaluation (needs no variants then)
    eval_set: str = "test"  # export.lsp_check.EVAL_SETS: test | holdout (LSP train im0801-im1000)
    fp16: bool = False
    int8: bool = False
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES
    max_int8_drop: float = MAX_INT8_PCK_DROP
    force: bool = False
    # Stride-2 4x4 deconvolutions as Convs + DepthToSpace (export.subpixel) in every written file.
    subpixel: bool = True
    eval_flip_test: bool = False
    threads: int = 2  # ONNX Runtime and torch threads for verification and evaluation
    progress: bool = True


@dataclass(frozen=True)
class VariantResult:
    precision: str
    path: Path | None  # None when the variant was not written
    size_bytes: int
    pck: float | None
    pck_fp32: float | None
    agreement: Agreement | None = None  # FP16 vs the FP32 file
    written: bool = True
    forced: bool = False

    @property
    def drift_pp(self) -> float | None:
        """PCK points gained against FP32 (negative: lost)."""
        if self.pck is None or self.pck_fp32 is None:
            return None
        return self.pck - self.pck_fp32


@dataclass(frozen=True)
class ExportResult:
    path: Path
    info: ModelInfo
    agreement: Agreement  # ONNX Runtime vs torch
    fp32: VariantResult
    variants: tuple[VariantResult, ...] = field(default_factory=tuple)

    def table(self) -> str:
        """A plain-text table of the files written and their accuracy."""
        rows = [("variant", "file", "MB", "PCK@0.2", "drift (pp)")]
        for v in (self.fp32, *self.variants):
            rows.append((v.precision + (" (forced)" if v.forced else "") + ("" if v.written else " (NOT written)"),
                         str(v.path) if v.path else "-", f"{v.size_bytes / 1e6:.1f}" if v.size_bytes else "-",
                         "-" if v.pck is None else f"{v.pck:.2f}",
                         "-" if v.drift_pp is None or v.precision == "fp32" else f"{v.drift_pp:+.2f}"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)


def variant_path(output: Path, precision: str) -> Path:
    """model.onnx -> model.fp16.onnx / model.int8.onnx."""
    return output.with_name(f"{output.stem}.{precision}{output.suffix or '.onnx'}")


def _torch_heatmaps(model: torch.nn.Module, tensors: np.ndarray) -> np.ndarray:
    out = []
    with torch.no_grad():
        for start in range(0, len(tensors), VERIFY_BATCH):
            out.append(model(torch.from_numpy(tensors[start:start + VERIFY_BATCH])).float().numpy())
    return np.concatenate(out)


def _torch_presence(model: torch.nn.Module, tensors: np.ndarray) -> np.ndarray:
    out = []
    with torch.no_grad():
        for start in range(0, len(tensors), VERIFY_BATCH):
            out.append(model(torch.from_numpy(tensors[start:start + VERIFY_BATCH]), with_presence=True)[1]
                       .float().numpy())
    return np.concatenate(out)


def _ort_heatmaps(pose_model: PoseModel, tensors: np.ndarray) -> np.ndarray:
    return np.concatenate([infer(pose_model.session, tensors[s:s + VERIFY_BATCH])
                           for s in range(0, len(tensors), VERIFY_BATCH)])


def _ort_presence(pose_model: PoseModel, tensors: np.ndarray) -> np.ndarray:
    return np.concatenate([infer_outputs(pose_model.session, tensors[s:s + VERIFY_BATCH],
                                         pose_model.info.presence_output)[1]
                           for s in range(0, len(tensors), VERIFY_BATCH)])


def _presence_inputs(tensors: np.ndarray, info: ModelInfo, count: int) -> np.ndarray:
    """The presence check's crops: the LSP verification images (persons) and as many person-free ones."""
    return np.concatenate([tensors, person_free_inputs(info, count)], axis=0)


def _load(path: Path, options: ExportOptions) -> PoseModel:
    # Verification and evaluation always run on the CPU provider, the reference platform of the tolerances.
    return PoseModel.load(path, providers=["cpu"], threads=options.threads)


def _evaluate(pose_model: PoseModel, records, options: ExportOptions, desc: str) -> PCKSummary | None:
    if not records:
        return None
    summary = lsp_pck(pose_model, records, flip_test=options.eval_flip_test, progress=options.progress, desc=desc,
                      eval_set=EVAL_SETS[options.eval_set][2])
    logger.info("%s: PCK@0.2 %.2f on %d held-out LSP images (%s)", desc, summary.pck, summary.images, options.eval_set)
    return summary


def _variant_metadata(summary: PCKSummary | None, fp32: PCKSummary | None, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = dict(extra)
    if summary is not None:
        data["eval"] = summary.to_dict()
        if fp32 is not None:
            data["pck_fp32"] = fp32.pck
            data["drift_pp"] = summary.pck - fp32.pck
    return data


def export_model(model: torch.nn.Module, info: ModelInfo, output: str | os.PathLike[str],
                 data_root: str | os.PathLike[str] | None = None, options: ExportOptions = ExportOptions()) -> ExportResult:
    """Export ``model`` described by ``info`` to ``output`` (.onnx) and its variants; see the module doc."""
    output = Path(output)
    if options.verify_images < 1:
        raise ValueError(f"verify_images must be >= 1 (export always verifies), got {options.verify_images}")
    if (options.fp16 or options.int8) and options.eval_images < 1:
        raise ValueError("FP16/INT8 variants need eval_images >= 1 to measure their PCK drift")
    if options.eval_set not in EVAL_SETS:
        raise ValueError(f"unknown evaluation set {options.eval_set!r}; choose one of {', '.join(EVAL_SETS)}")
    torch.set_num_threads(options.threads)
    if has_presence_head(model) != info.has_presence:
        raise ValueError(f"the network {'has' if has_presence_head(model) else 'has no'} presence head but its "
                         f"ModelInfo says presence_output={info.presence_output!r}")

    proto = torch_to_onnx(model, info.input_size, options.opset)
    rewrites: dict[str, Any] = {}
    if options.subpixel:
        # Before the verification against torch, so that what is verified (and quantised) is what is written.
        proto, report = rewrite_with_report(proto)
        rewrites["subpixel_deconv"] = report.to_dict()
    info = info.replace(precision="fp32", variant={}, graph_rewrites=rewrites)
    attach_metadata(proto, info)
    save_single_file(proto, output)
    try:
        fp32_model = _load(output, options)
        verify_records = lsp_records(data_root, "test", options.verify_images)
        tensors = network_inputs(verify_records, info)
        agreement = compare_heatmaps(_torch_heatmaps(model, tensors), _ort_heatmaps(fp32_model, tensors),
                                     info.heatmap_stride, FP32_HEATMAP_TOLERANCE)
        require_agreement(agreement, FP32_MIN_KEYPOINT_AGREEMENT, f"ONNX Runtime ({output.name}) vs torch")
        presence_tensors = presence_agreement = None
        if info.has_presence:
            presence_tensors = _presence_inputs(tensors, info, options.verify_images)
            presence_agreement = compare_presence(_torch_presence(model, presence_tensors),
                                                  _ort_presence(fp32_model, presence_tensors),
                                                  info.presence_threshold or DEFAULT_PRESENCE_THRESHOLD,
                                                  FP32_HEATMAP_TOLERANCE)
            require_presence_agreement(presence_agreement, 1.0, f"ONNX Runtime ({output.name}) vs torch")
    except BaseException:
        output.unlink(missing_ok=True)
        raise

    eval_recs = eval_records(data_root, options.eval_set, options.eval_images) if options.eval_images > 0 else []
    fp32_summary = _evaluate(fp32_model, eval_recs, options, "fp32 PCK")
    extra = {} if presence_agreement is None else {"presence_verified_against_torch": presence_agreement.to_dict()}
    info = info.replace(variant=_variant_metadata(fp32_summary, None, verified_against_torch=agreement.to_dict(),
                                                  **extra))
    set_file_metadata(output, info)
    fp32_pck = None if fp32_summary is None else fp32_summary.pck
    fp32 = VariantResult("fp32", output, output.stat().st_size, fp32_pck, fp32_pck)

    variants: list[VariantResult] = []
    if options.fp16:
        variants.append(_export_fp16(output, info, tensors, fp32_model, eval_recs, fp32_summary, options,
                                     presence_tensors))
    if options.int8:
        try:
            variants.append(_export_int8(output, info, data_root, eval_recs, fp32_summary, options,
                                         fp32_model, presence_tensors))
        except DriftError as exc:
            exc.export = ExportResult(output, info, agreement, fp32, tuple(variants) + (exc.result,))
            raise
    return ExportResult(output, info, agreement, fp32, tuple(variants))


def _variant_presence(fp32_model: PoseModel, variant_model: PoseModel, presence_tensors: np.ndarray | None,
                      tolerance: float) -> PresenceAgreement | None:
    if presence_tensors is None:
        return None
    return compare_presence(_ort_presence(fp32_model, presence_tensors), _ort_presence(variant_model, presence_tensors),
                            fp32_model.info.presence_threshold or DEFAULT_PRESENCE_THRESHOLD, tolerance)


def _export_fp16(output: Path, info: ModelInfo, tensors: np.ndarray, fp32_model: PoseModel, eval_records,
                 fp32_summary: PCKSummary | None, options: ExportOptions,
                 presence_tensors: np.ndarray | None = None) -> VariantResult:
    path = variant_path(output, "fp16")
    proto = convert_fp16(onnx.load(str(output)))
    fp16_info = info.replace(precision="fp16", variant={})
    attach_metadata(proto, fp16_info)
    save_single_file(proto, path)
    try:
        fp16_model = _load(path, options)
        agreement = compare_heatmaps(_ort_heatmaps(fp32_model, tensors), _ort_heatmaps(fp16_model, tensors),
                                     info.heatmap_stride, FP16_HEATMAP_TOLERANCE)
        require_agreement(agreement, FP16_MIN_KEYPOINT_AGREEMENT, f"FP16 ({path.name}) vs FP32")
        presence = _variant_presence(fp32_model, fp16_model, presence_tensors, FP16_HEATMAP_TOLERANCE)
        if presence is not None:
            require_presence_agreement(presence, FP16_MIN_PRESENCE_AGREEMENT, f"FP16 ({path.name}) vs FP32")
        summary = _evaluate(fp16_model, eval_records, options, "fp16 PCK")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    extra = {} if presence is None else {"presence_agreement_with_fp32": presence.to_dict()}
    set_file_metadata(path, fp16_info.replace(variant=_variant_metadata(
        summary, fp32_summary, converted_from=info.name, agreement_with_fp32=agreement.to_dict(), **extra,
        note="float16 compute with float32 input/output; meant for GPUs (no faster on CPUs)")))
    result = VariantResult("fp16", path, path.stat().st_size, summary.pck, fp32_summary.pck, agreement)
    logger.info("fp16: PCK@0.2 %.2f (FP32 %.2f, drift %+.2f points)", result.pck, result.pck_fp32, result.drift_pp)
    return result


def _export_int8(output: Path, info: ModelInfo, data_root, eval_records, fp32_summary: PCKSummary,
                 options: ExportOptions, fp32_model: PoseModel | None = None,
                 presence_tensors: np.ndarray | None = None) -> VariantResult:
    path = variant_path(output, "int8")
    tmp = path.with_name(path.name + ".tmp")
    calibration = calibration_inputs(data_root, info, options.calibration_images)
    try:
        quantize_int8(output, tmp, calibration, progress=options.progress)
        int8_info = info.replace(precision="int8", variant={})
        set_file_metadata(tmp, int8_info)
        int8_model = _load(tmp, options)
        summary = _evaluate(int8_model, eval_records, options, "int8 PCK")
        # Recorded with the FP16 tolerance for reference; the decision agreement is what is checked (a warning).
        presence = None if fp32_model is None else _variant_presence(fp32_model, int8_model, presence_tensors,
                                                                     FP16_HEATMAP_TOLERANCE)
        if presence is not None:
            level = logging.INFO if presence.decision_agreement >= INT8_MIN_PRESENCE_AGREEMENT else logging.WARNING
            logger.log(level, "int8 presence vs FP32: %s", presence.summary())
        drop = fp32_summary.pck - summary.pck
        refused = drop > options.max_int8_drop
        forced = refused and options.force
        result = VariantResult("int8", None if refused and not forced else path, tmp.stat().st_size, summary.pck,
                               fp32_summary.pck, written=not refused or forced, forced=forced)
        logger.info("int8: PCK@0.2 %.2f (FP32 %.2f, drift %+.2f points; allowed loss %.2f)", summary.pck,
                    fp32_summary.pck, result.drift_pp, options.max_int8_drop)
        if refused and not forced:
            raise DriftError(f"INT8 model not written: it loses {drop:.2f} PCK@0.2 points against FP32 "
                             f"({summary.pck:.2f} vs {fp32_summary.pck:.2f} on {summary.images} held-out LSP images), "
                             f"more than the allowed {options.max_int8_drop:.2f}; use --force to write it anyway or "
                             "--max-int8-drop to change the limit", result)
        if forced:
            logger.warning("int8: writing %s despite a loss of %.2f points (--force)", path, drop)
        set_file_metadata(tmp, int8_info.replace(variant=_variant_metadata(
            summary, fp32_summary, quantized_from=info.name, forced=forced, max_allowed_drop_pp=options.max_int8_drop,
            **({} if presence is None else {"presence_agreement_with_fp32": presence.to_dict()}),
            quantization={"method": "onnxruntime quantize_static", "format": "QDQ", "activations": "uint8",
                          "weights": "int8 per-channel", "calibration": "minmax",
                          "float_ops": float_kept_ops(output),
                          "calibration_set": "lsp train (im0001-im1000), whole image letterboxed"
                                             + (", plus person-free synthetic images" if info.has_presence else ""),
                          "calibration_images": len(calibration)})))
        os.replace(tmp, path)
        return VariantResult("int8", path, path.stat().st_size, summary.pck, fp32_summary.pck, forced=forced)
    finally:
        tmp.unlink(missing_ok=True)


def export_checkpoint(checkpoint: str | os.PathLike[str], output: str | os.PathLike[str] | None = None,
                      data_root: str | os.PathLike[str] | None = None, options: ExportOptions = ExportOptions(),
                      metrics: dict[str, Any] | None = None, name: str = "",
                      presence_threshold: float | None = None,
                      presence_acquire_threshold: float | None = None) -> ExportResult:
    """Export a train/ checkpoint (last.pt / best.pt); ``output`` defaults to the checkpoint with .onnx.
    ``presence_threshold`` (a probability) is stored for a model with a presence head (default 0.5), and
    ``presence_acquire_threshold`` (the hysteresis' higher threshold) when given."""
    from train.model import load_checkpoint

    checkpoint = Path(checkpoint)
    model, config, ckpt = load_checkpoint(checkpoint)
    if (presence_threshold is not None or presence_acquire_threshold is not None) and not config.model.presence_head:
        raise ValueError(f"a presence threshold was given but {checkpoint} has no presence head")
    info = info_from_config(config, ckpt, name=name, source_sha256=sha256_file(checkpoint), metrics=metrics,
                            presence_threshold=presence_threshold,
                            presence_acquire_threshold=presence_acquire_threshold)
    return export_model(model, info, output or checkpoint.with_suffix(".onnx"), data_root, options)

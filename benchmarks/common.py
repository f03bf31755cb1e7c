"""What the benchmark scripts share: paths, the machine description, result files, prepared clips and models.

Every script writes its figures as JSON (``--json``) with a ``machine`` block (CPU, cores, load average at
start and end, library versions), so that benchmarks/make_table.py can rebuild the README table from the
files alone and every number keeps the conditions it was measured under.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rehab.core.machine import cpu_name  # noqa: F401  (one copy, shared with the model card and train logs)
from rehab.core.files import sha256_file, write_json  # noqa: F401  (one copy each; bench_peer takes sha256_file here)

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

logger = logging.getLogger(__name__)

SHARED_DIR = Path(os.environ.get("REHAB_SHARED_DIR", REPO.parent / "shared"))
# Prepared inputs (transcoded clips, exported and quantised models) are cached here; /out/ is git-ignored.
WORK_DIR = Path(os.environ.get("REHAB_BENCH_WORK_DIR", REPO / "out" / "benchmarks"))
RESULTS_DIR = REPO / "benchmarks" / "results"
DEFAULT_MODEL = REPO / "rehab" / "models" / "default.onnx"
MP_VENV = Path(os.environ.get("REHAB_MP_VENV", "/work/mp-venv"))
# The export's INT8 calibration: LSP train images, whole image letterboxed (export.exporter default).
INT8_CALIBRATION_IMAGES = 128
# Transcoded clips keep nearly all detail (x264's default is 23): decoding cost, not artefacts, is measured.
CLIP_CRF = 18

# The clips of the end-to-end and peer benchmarks: (label, source file in shared/videos, frame height).
# sports2d_demo is 1768x994 VP9; it is transcoded to H.264 at 720p and 1080p (what webcams and phones
# deliver). The Pose2Sim lab clip is a native 1080x1920 (portrait) H.264 recording.
CLIPS = {
    "720p": ("sports2d_demo.mp4", 720),
    "1080p": ("sports2d_demo.mp4", 1080),
    "1080p-portrait": ("pose2sim_balancing_cam01.mp4", None),
}


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def machine(**extra: Any) -> dict[str, Any]:
    """The conditions of a run: CPU, cores, memory, load average, library versions."""
    import numpy as np

    info: dict[str, Any] = {
        "cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "load_average_start": load_average(),
        "host": platform.node(),
    }
    try:
        info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    for module in ("onnxruntime", "cv2", "av", "torch"):
        if module in sys.modules:
            info[module] = getattr(sys.modules[module], "__version__", "?")
    info.update(extra)
    return info


def finish(result: dict[str, Any], path: str | os.PathLike[str] | None) -> dict[str, Any]:
    """Stamp the end load average into ``result["machine"]`` and write it as JSON to ``path`` (if given)."""
    result.setdefault("machine", machine())["load_average_end"] = load_average()
    if path is not None:
        write_json(result, path)
        logger.info("wrote %s", path)
    return result


def command_line() -> str:
    """How this script was called, relative to the repository, for the README's command column."""
    script = Path(sys.argv[0]).resolve()
    try:
        script_text = str(script.relative_to(REPO))
    except ValueError:
        script_text = str(script)
    return " ".join(["python", script_text, *sys.argv[1:]])


# ----------------------------------------------------------------------------------------------
# prepared inputs


def shared_video(name: str) -> Path:
    path = SHARED_DIR / "videos" / name
    if not path.is_file():
        raise FileNotFoundError(f"clip {path} not found: set REHAB_SHARED_DIR to the folder holding videos/")
    return path


def prepare_clip(label: str, work_dir: Path = WORK_DIR) -> Path:
    """The clip for ``label`` in CLIPS: the shared file itself, or an H.264 transcode at its height (cached)."""
    import cv2

    from rehab.runtime.video import VideoReader, VideoWriter

    if label not in CLIPS:
        raise ValueError(f"unknown clip {label!r}; known: {', '.join(CLIPS)}")
    name, height = CLIPS[label]
    source = shared_video(name)
    if height is None:
        return source
    out = work_dir / "clips" / f"{Path(name).stem}_{height}p.mp4"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    logger.info("transcoding %s to %dp H.264 (once; cached in %s)", source.name, height, out)
    with VideoReader(source) as reader, VideoWriter(out, fps=reader.info.fps, crf=CLIP_CRF, preset="medium") as writer:
        width = round(reader.info.width * height / reader.info.height / 2) * 2
        for frame, _ in reader:
            interpolation = cv2.INTER_AREA if frame.shape[0] > height else cv2.INTER_CUBIC
            writer.write(cv2.resize(frame, (width, height), interpolation=interpolation))
    return out


def int8_variant(fp32_path: str | os.PathLike[str], work_dir: Path = WORK_DIR,
                 calibration_images: int = INT8_CALIBRATION_IMAGES, data_root: str | None = None) -> Path:
    """Static QDQ INT8 copy of an exported model, made exactly as `rehab export --int8` makes it (cached by hash).

    Calibration: ``calibration_images`` evenly spaced LSP train images, whole image letterboxed; the metadata
    is the FP32 model's with precision "int8", so PoseModel loads it like an exported INT8 file.
    """
    from export.lsp_check import calibration_inputs
    from export.onnx_export import set_file_metadata
    from export.variants import quantize_int8
    from rehab.runtime.model import PoseModel

    fp32_path = Path(fp32_path)
    digest = sha256_file(fp32_path)[:16]
    out = work_dir / "models" / f"{fp32_path.stem}.{digest}.int8.onnx"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    info = PoseModel.load(fp32_path, providers="cpu").info
    start = time.perf_counter()
    tensors = calibration_inputs(data_root, info, calibration_images)
    tmp = out.with_name(out.name + ".tmp")
    try:
        quantize_int8(fp32_path, tmp, tensors, progress=False)
        set_file_metadata(tmp, info.replace(precision="int8"))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("quantised %s to %s in %.0f s", fp32_path, out, time.perf_counter() - start)
    return out


def subpixel_variant(fp32_path: str | os.PathLike[str], work_dir: Path = WORK_DIR) -> Path:
    """The model with its stride-2 deconvolutions in sub-pixel form (export.subpixel, as `rehab export` writes
    it by default), cached by hash; a file with none left to rewrite (exported so already) is its own variant."""
    import onnx

    from export.onnx_export import attach_metadata, save_single_file
    from export.subpixel import count_rewritable, rewrite_with_report
    from rehab.runtime.metadata import from_metadata_props

    fp32_path = Path(fp32_path)
    model = onnx.load(str(fp32_path))
    if count_rewritable(model) == 0:
        logger.info("%s: no ConvTranspose left to rewrite; it is its own sub-pixel variant", fp32_path)
        return fp32_path
    out = work_dir / "models" / f"{fp32_path.stem}.{sha256_file(fp32_path)[:16]}.subpixel.onnx"
    if not out.is_file():
        rewritten, report = rewrite_with_report(model)  # checked against the original on random inputs
        try:
            info = from_metadata_props({p.key: p.value for p in rewritten.metadata_props}, str(fp32_path))
        except ValueError:
            info = None  # not a rehab export: no metadata to extend
        if info is not None:
            attach_metadata(rewritten, info.replace(graph_rewrites={**info.graph_rewrites,
                                                                    "subpixel_deconv": report.to_dict()}))
        save_single_file(rewritten, out)
        logger.info("%s: %d ConvTranspose node(s) in sub-pixel form -> %s", fp32_path, report.deconvolutions, out)
    return out

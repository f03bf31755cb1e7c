"""ONNX Runtime sessions: provider choice (TensorRT > CUDA > CPU), threads, and loud GPU fallbacks.

ONNX Runtime silently runs on the CPU when a requested GPU provider fails to initialise (it logs an error
of its own but keeps going). A pose monitor that is suddenly 10x slower without saying why is a support
call, so every such fallback is logged here as a WARNING with the probable reason.
"""

from __future__ import annotations

import functools
import glob
import logging
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import onnxruntime as ort

logger = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
# "auto" tries these in order among the providers this onnxruntime build has.
AUTO_PREFERENCE = (TENSORRT, CUDA, CPU)
GPU_PROVIDERS = (TENSORRT, CUDA)
PROVIDER_ALIASES = {"cpu": CPU, "cuda": CUDA, "gpu": CUDA, "tensorrt": TENSORRT, "trt": TENSORRT}
# HEURISTIC picks a cuDNN convolution algorithm without timing them all; EXHAUSTIVE (ORT's default) can
# stall the first frames of a live stream for seconds, and again for every new batch size.
DEFAULT_CUDNN_CONV_ALGO_SEARCH = "HEURISTIC"
CUDNN_CONV_ALGO_SEARCHES = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")
GRAPH_OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}

ProviderSpec = Union[str, tuple[str, dict[str, Any]]]


class ModelLoadError(ValueError):
    """An ONNX file that exists but cannot be loaded (corrupt, truncated, not ONNX)."""


def nvidia_gpu_visible() -> bool:
    """Whether an NVIDIA GPU is plausibly present; True where this cannot be told (not Linux).

    Lets "auto" skip the GPU providers quietly on CPU-only Linux machines, where onnxruntime-gpu would
    otherwise log a CUDA load error on every session.
    """
    if platform.system() != "Linux":
        return True
    return (os.path.exists("/proc/driver/nvidia/version") or bool(glob.glob("/dev/nvidia[0-9]*"))
            or os.path.exists("/dev/dxg"))  # /dev/dxg: the GPU of WSL2


def _provider_name(spec: ProviderSpec) -> str:
    name = spec[0] if isinstance(spec, tuple) else spec
    if not isinstance(name, str):
        raise ValueError(f"a provider must be a name or (name, options), got {spec!r}")
    return PROVIDER_ALIASES.get(name.lower(), name)


def _default_options(name: str, device_id: int, cudnn_conv_algo_search: str) -> dict[str, Any]:
    if name == CUDA:
        return {"device_id": device_id, "cudnn_conv_algo_search": cudnn_conv_algo_search,
                # Grow the memory arena by what is asked, not by powers of two: pose models are small
                # and the GPU may be shared with a detector.
                "arena_extend_strategy": "kSameAsRequested"}
    if name == TENSORRT:
        return {"device_id": device_id}
    return {}


@functools.lru_cache(maxsize=None)
def _say_once(message: str) -> None:
    """Log ``message`` at INFO the first time only (every model loaded in a process would repeat it)."""
    logger.info(message)


def resolve_providers(providers: str | Sequence[ProviderSpec] = "auto", device_id: int = 0,
                      cudnn_conv_algo_search: str = DEFAULT_CUDNN_CONV_ALGO_SEARCH) -> list[tuple[str, dict[str, Any]]]:
    """The (name, options) list to hand to ONNX Runtime; CPU is always last as the fallback.

    ``providers`` is "auto", one name, or a list of names / (name, options) pairs. Names may be short
    ("cpu", "cuda", "tensorrt"). Asked-for providers this onnxruntime build lacks are dropped with a WARNING.
    """
    if cudnn_conv_algo_search not in CUDNN_CONV_ALGO_SEARCHES:
        raise ValueError(f"cudnn_conv_algo_search must be one of {CUDNN_CONV_ALGO_SEARCHES}, got {cudnn_conv_algo_search!r}")
    available = ort.get_available_providers()
    if isinstance(providers, str) and providers.lower() == "auto":
        names = [p for p in AUTO_PREFERENCE if p in available]
        if not nvidia_gpu_visible() and any(p in GPU_PROVIDERS for p in names):
            _say_once("no NVIDIA GPU device found; using the CPU provider")
            names = [p for p in names if p not in GPU_PROVIDERS]
        requested: list[ProviderSpec] = list(names)
    else:
        requested = [providers] if isinstance(providers, (str, tuple)) else list(providers)
        if not requested:
            raise ValueError('providers must be "auto" or a non-empty list of provider names')
    resolved: list[tuple[str, dict[str, Any]]] = []
    for spec in requested:
        name = _provider_name(spec)
        if name not in available:
            logger.warning("execution provider %s was asked for but this onnxruntime build does not have it "
                           "(available: %s)%s; it is skipped", name, ", ".join(available),
                           "; install onnxruntime-gpu for CUDA/TensorRT" if name in GPU_PROVIDERS else "")
            continue
        options = _default_options(name, device_id, cudnn_conv_algo_search)
        if isinstance(spec, tuple):
            options.update(spec[1])
        if name not in [n for n, _ in resolved]:
            resolved.append((name, options))
    if CPU not in [n for n, _ in resolved]:
        resolved.append((CPU, {}))
    return resolved


def session_options(threads: int | None = None, allow_spinning: bool = False,
                    graph_optimization: str = "all") -> ort.SessionOptions:
    """Options with ``threads`` intra-op threads (None: ONNX Runtime's default, one per physical core)."""
    opts = ort.SessionOptions()
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
        opts.intra_op_num_threads = threads
    # One operator at a time: a pose CNN is a chain, parallel operators buy nothing and cost threads.
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Spin-waiting workers burn the cores that video decoding and the UI need (measured: 43 -> 113 ms per
    # frame with spinning on 2 shared cores, 78 ms without).
    spin = "1" if allow_spinning else "0"
    opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
    opts.add_session_config_entry("session.inter_op.allow_spinning", spin)
    try:
        opts.graph_optimization_level = GRAPH_OPTIMIZATION_LEVELS[graph_optimization]
    except KeyError:
        raise ValueError(f"graph_optimization must be one of {', '.join(GRAPH_OPTIMIZATION_LEVELS)}, "
                         f"got {graph_optimization!r}") from None
    return opts


def _open(path: Path, opts: ort.SessionOptions, providers: list[tuple[str, dict[str, Any]]]) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:  # onnxruntime raises its own pybind exception types for bad files
        raise ModelLoadError(f"could not load ONNX model {path}: the file is corrupt, truncated or not an ONNX "
                             f"model ({type(exc).__name__}: {str(exc).strip()[:300]})") from exc


def create_session(path: str | os.PathLike[str], providers: str | Sequence[ProviderSpec] = "auto",
                   threads: int | None = None, allow_spinning: bool = False, device_id: int = 0,
                   cudnn_conv_algo_search: str = DEFAULT_CUDNN_CONV_ALGO_SEARCH,
                   graph_optimization: str = "all") -> tuple[ort.InferenceSession, tuple[str, ...]]:
    """An inference session for the ONNX file at ``path`` and the providers it actually runs on."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}" + (" (it is a directory)" if path.is_dir() else ""))
    wanted = resolve_providers(providers, device_id, cudnn_conv_algo_search)
    opts = session_options(threads, allow_spinning, graph_optimization)
    session = _open(path, opts, wanted)
    active = tuple(session.get_providers())
    failed = [name for name, _ in wanted if name in GPU_PROVIDERS and name not in active]
    if failed and any(p in GPU_PROVIDERS for p in active):
        # After a TensorRT failure ONNX Runtime retries on CUDA by itself, but without our provider options
        # (device_id, cudnn_conv_algo_search): open the session again without the providers that failed.
        session = _open(path, opts, [(name, o) for name, o in wanted if name not in failed])
        active = tuple(session.get_providers())
    on_gpu = any(p in GPU_PROVIDERS for p in active)
    for name, _ in wanted:
        if name in GPU_PROVIDERS and name not in active:
            logger.warning("%s%s was asked for but ONNX Runtime could not initialise it for %s and runs on %s instead: "
                           "no usable GPU at device_id=%d, or CUDA/cuDNN%s libraries missing or of the wrong version "
                           "(see the onnxruntime error above).%s", "" if on_gpu else "!!! ", name, path,
                           ", ".join(active), device_id, "/TensorRT" if name == TENSORRT else "",
                           "" if on_gpu else " Inference runs on the CPU and will be much slower.")
    logger.debug("session for %s on %s (threads=%s, spinning=%s)", path, ", ".join(active), threads, allow_spinning)
    return session, active

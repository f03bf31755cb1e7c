"""The Ray engine of `rehab process`: every video one Ray task, on one machine or a cluster.

Each task runs the local engine's own per-video function (rehab.batch.run_job -> process_video), so the
outputs and their guarantees are the same; only the scheduler differs:

- **Outputs** are staged in ``<out>/.partial/`` and published by one rename, DONE.json last, exactly as with
  the local engine. The output folder must therefore be the *same* folder on every node (a shared
  filesystem: NFS, CephFS, a mounted bucket with rename), and so must the input videos. Before any video
  starts, a probe task on every node checks that it sees the folder (a token file the driver wrote), can
  write there and sees every input; a node that does not fails the run with one line naming it, instead of
  writing outputs nobody will find. Each task checks the token again, for nodes that join later.
- **The project** must be installed on every node (the same version); the probe names the missing package.
- **The model** travels with the tasks: the driver puts the file's bytes in Ray's object store once; a worker
  fetches them on its first video, checks their SHA-256 against the driver's, caches the file on its node
  and loads it once per worker process. summary.json records that SHA-256 (and the node's cached file).
- **A worker that dies** (killed, out of memory, a decoder crash) is Ray's to retry, at most MAX_RETRIES
  times; its half-written staging folder is never published and is deleted at the end of the run. A
  retry that finds the video already published by the attempt that died returns that result, so a video
  completes once. A video that fails for a reason of its own fails alone, with its reason.
- **Ctrl-C** cancels the tasks not yet finished (a running one deletes its staging folder); published
  videos stay, and running the same command again finishes the rest.

A re-run skips complete outputs (the same plan as the local engine), one run at a time may write to an
output folder (the same lock), and the summary table is the same (with absolute paths: they are what every
node sees). Progress is per video (Ray reports tasks, not frames).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rehab import __version__
from rehab.batch import (
    BatchError,
    BatchResult,
    OutputLock,
    job_size_bytes,
    plan_jobs,
    prepare_output_folder,
    usable_cpus,
)
from rehab.batch_inputs import discover_videos
from rehab.batch_progress import ProgressBars, log_result
from rehab.outputs import STAGING_DIR, SUMMARY_JSON, check_complete, sha256_file
from rehab.video_job import (
    BatchOptions,
    Job,
    VideoResult,
    VideoStatus,
    failed_result,
    output_fingerprint,
    run_job,
)

if TYPE_CHECKING:
    from rehab.runtime.model import PoseModel

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'rehab-pose[cluster]' (in a checkout: pip install -e '.[cluster]')"
DEFAULT_CPUS_PER_VIDEO = 1
# Ray runs a video again at most this often when the worker process running it dies.
MAX_RETRIES = 2
# Ray's logical memory per task: the model, a few decoded frames and the encoder (~0.4 GB measured for a
# local worker), so that a node with little memory is not given more videos than it holds.
TASK_MEMORY_BYTES = 512 * 1024 * 1024
# A cluster address that does not answer is reported this fast (Ray itself retries for minutes).
CONNECT_TIMEOUT_S = 5.0
# The node probes start a worker and import ONNX Runtime and OpenCV: seconds, more on a busy node.
PROBE_TIMEOUT_S = 120.0
# After Ctrl-C, running tasks get this long to stop by themselves before their workers are killed.
CANCEL_GRACE_S = 10.0
POLL_INTERVAL_S = 0.2
RUN_TOKEN_PREFIX = ".rehab-ray-run."
MODEL_CACHE_DIR = "rehab-models"
# What a node imports to process a video (rehab.batch_ray: an older install lacks the engine).
REQUIRED_MODULES = ("rehab", "rehab.batch_ray", "numpy", "cv2", "onnxruntime", "av", "pandas", "pyarrow")
# An HTTP/2 client preface and an empty SETTINGS frame: Ray's head (GCS) and client server speak gRPC, which
# answers with a SETTINGS frame (type 4), while other services do not.
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_HTTP2_FRAME_HEADER_BYTES = 9
_HTTP2_SETTINGS = 4


class ModelMismatchError(Exception):
    """The model bytes a node received are not the driver's model."""


def import_ray():
    """The ray module, or a BatchError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise BatchError(f"--engine ray needs Ray, which is not installed here: {INSTALL_HINT}") from None
    return ray


def split_address(address: str) -> tuple[str, int]:
    """(host, port) of ``HOST:PORT`` or ``ray://HOST:PORT``; ValueError for anything else."""
    bare = address.removeprefix("ray://")
    host, sep, port = bare.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"--address must be auto, HOST:PORT or ray://HOST:PORT, got {address!r}")
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """BatchError unless a gRPC server (a Ray head or Ray client server) answers at ``address``, within seconds."""
    host, port = split_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as conn:
            conn.settimeout(timeout_s)
            conn.sendall(_HTTP2_PREFACE)
            header = conn.recv(_HTTP2_FRAME_HEADER_BYTES)
    except socket.gaierror as exc:
        raise BatchError(f"no Ray cluster at {address}: unknown host {host!r} ({exc.strerror})") from None
    except TimeoutError:
        raise BatchError(f"no Ray cluster at {address}: no answer within {timeout_s:g} s; is the head node "
                         "running (`ray start --head`) and the port open?") from None
    except OSError as exc:
        raise BatchError(f"no Ray cluster at {address}: {exc.strerror or exc}; start one with "
                         f"`ray start --head --port {port}` or check --address") from None
    if len(header) < _HTTP2_FRAME_HEADER_BYTES or header[3] != _HTTP2_SETTINGS:
        raise BatchError(f"something answers at {address}, but not a Ray cluster (no gRPC reply); "
                         "check the host and port of --address") from None


def _connect(ray, address: str | None, num_cpus: int) -> None:
    if address is None:
        # Ray starts its workers 15 steps nicer than itself by default: on a machine shared with other work
        # (the dashboard, a live session) the videos would wait for everything else, as the local engine's
        # workers do not (measured: 4% of a core each under a load of 16).
        ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING,
                 _system_config={"worker_niceness": 0})
        return
    try:
        ray.init(address=address, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        # Ray sends a token only when told to: RAY_AUTH_MODE=token, the token in ~/.ray/auth_token or RAY_AUTH_TOKEN.
        hint = "" if os.environ.get("RAY_AUTH_MODE") else (
            " (a cluster with token authentication needs RAY_AUTH_MODE=token and its token in ~/.ray/auth_token "
            "or RAY_AUTH_TOKEN)")
        raise BatchError(f"cannot use the Ray cluster at {address}: {first}{hint}") from None


def _node_label(node: Mapping[str, Any], report: Mapping[str, Any] | None = None) -> str:
    host = (report or {}).get("host") or node.get("NodeManagerHostname") or "?"
    return f"{node.get('NodeManagerAddress', '?')} ({host})"


def probe_nodes(ray, token_path: Path, sources: Sequence[str]) -> int:
    """Check every alive node can run the project and sees the output folder and the inputs; BatchError
    naming each node that cannot. Returns the number of nodes."""
    from ray import cloudpickle
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from rehab import batch_ray_probe

    cloudpickle.register_pickle_by_value(batch_ray_probe)
    probe = ray.remote(batch_ray_probe.probe_node)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    refs = {probe.options(num_cpus=0, max_retries=0, name="rehab:probe-node",
                          scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
                          ).remote(str(token_path), list(REQUIRED_MODULES), list(sources)): n for n in nodes}
    ready, late = ray.wait(list(refs), num_returns=len(refs), timeout=PROBE_TIMEOUT_S)
    problems = [f"node {_node_label(refs[ref])} did not answer a probe within {PROBE_TIMEOUT_S:g} s" for ref in late]
    for ref in ready:
        node = refs[ref]
        try:
            report = ray.get(ref)
        except ray.exceptions.RayError as exc:
            problems.append(f"node {_node_label(node)} could not run a probe: {_error_line(exc)}")
            continue
        problems += _node_problems(_node_label(node, report), report, token_path.parent)
    if problems:
        raise BatchError("the Ray cluster cannot run this batch: " + "; ".join(problems))
    return len(nodes)


def _node_problems(label: str, report: Mapping[str, Any], out_dir: Path) -> list[str]:
    problems = []
    if report["missing"]:
        missing = ", ".join(f"{name} ({why})" for name, why in report["missing"].items())
        problems.append(f"node {label} lacks {missing}: install the project on every node, the same version "
                        f"as here ({__version__}): {INSTALL_HINT}")
    elif report["version"] != __version__:
        problems.append(f"node {label} has rehab {report['version']}, this machine {__version__}: install the "
                        "same version on every node")
    if report["output"]:
        problems.append(f"node {label} {report['output']}: the output folder {out_dir} must be one folder that "
                        "every node can write (a shared filesystem mounted at the same path)")
    if report["sources_missing"]:
        problems.append(f"node {label} does not see {report['sources_missing']} input video(s) (e.g. "
                        f"{', '.join(report['sources_shown'])}): inputs must be on a shared filesystem too")
    return problems


def _error_line(exc: BaseException) -> str:
    """The line that says what went wrong: the last of the (remote) exception's text, which may hold a traceback."""
    cause = getattr(exc, "cause", None)
    text = str(cause if isinstance(cause, BaseException) else exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__


def describe_ray_error(ray, exc: BaseException) -> str:
    """One line for a task that Ray could not complete."""
    errors = ray.exceptions
    if isinstance(exc, errors.OutOfMemoryError):
        return f"Ray stopped it: its node ran out of memory ({MAX_RETRIES + 1} attempts)"
    if isinstance(exc, errors.WorkerCrashedError):
        return (f"the Ray worker process died while processing it, {MAX_RETRIES + 1} times (out of memory, a "
                "crash in the video decoder, or killed)")
    if isinstance(exc, errors.NodeDiedError):
        return "the Ray node processing it died"
    if isinstance(exc, errors.TaskCancelledError):
        return "cancelled"
    return f"Ray could not run it: {_error_line(exc)}"


# ----------------------------------------------------------------------------------------------
# on the node


# One model per worker process, loaded on its first video: (sha256, threads) -> model.
_node_model_cache: dict[tuple[str, int], "PoseModel"] = {}


def node_model(model_ref: Sequence[Any], model_sha256: str, file_name: str, threads: int) -> "PoseModel":
    """The driver's model on this node: cached as a file per node, checked by SHA-256, loaded once per process.

    ``model_ref`` is a one-item list holding the object-store reference, so that Ray fetches the bytes only
    when this process has not loaded the model yet."""
    key = (model_sha256, threads)
    if key in _node_model_cache:
        return _node_model_cache[key]
    import cv2
    import ray

    from rehab.runtime.model import PoseModel

    path = Path(tempfile.gettempdir()) / MODEL_CACHE_DIR / model_sha256 / file_name
    if not (path.is_file() and sha256_file(path) == model_sha256):
        data = ray.get(model_ref[0])
        received = hashlib.sha256(data).hexdigest()
        if received != model_sha256:
            raise ModelMismatchError(f"the model received on {socket.gethostname()} has SHA-256 {received}, not "
                                     f"the driver's {model_sha256}")
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f".{file_name}.{os.getpid()}.part")
        part.write_bytes(data)
        os.replace(part, path)
    cv2.setNumThreads(threads)
    model = PoseModel.load(path, threads=threads, allow_spinning=False)
    _node_model_cache.clear()
    _node_model_cache[key] = model
    return model


def earlier_attempt(job: Job) -> VideoResult | None:
    """The result of an attempt of this task that published the video and then died before reporting it."""
    if job.options.force:
        return None  # the folder may be the one --force is replacing
    fingerprint = output_fingerprint(job.source_sha256, job.model_sha256, job.options)
    if check_complete(job.output_dir, fingerprint) is not None:
        return None
    summary = json.loads((Path(job.output_dir) / SUMMARY_JSON).read_text(encoding="utf-8"))
    return VideoResult(source=job.source, name=Path(job.output_dir).name, status=VideoStatus.DONE, output_dir=job.output_dir,
                       frames=summary["processing"]["frames"],
                       frames_with_pose=summary["processing"]["frames_with_pose"],
                       repetitions=len(summary["repetitions"]), elapsed_s=summary["processing"]["elapsed_s"],
                       message="published by an earlier attempt",
                       truncated=(summary.get("truncated") or {}).get("message", ""))


def process_on_node(job: Job, model_ref: Sequence[Any], model_file_name: str, threads: int,
                    token_path: str) -> VideoResult:
    """One video as a Ray task: the local engine's run_job, with the model from the object store."""
    if not os.path.isfile(token_path):
        return failed_result(job, job.output_dir, f"node {socket.gethostname()} does not see the output folder "
                             f"{Path(token_path).parent} (no {Path(token_path).name}): it must be shared by every node")
    try:
        earlier = earlier_attempt(job)
        if earlier is not None:
            return earlier
        model = node_model(model_ref, job.model_sha256, model_file_name, threads)
    except (ModelMismatchError, OSError, ValueError) as exc:
        return failed_result(job, job.output_dir, str(exc))
    return run_job(job, model, threads, None)


# ----------------------------------------------------------------------------------------------
# the driver


def run_batch_ray(paths: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str],
                  options: BatchOptions | None = None, model_path: str | os.PathLike[str] | None = None, *,
                  address: str | None = None, cpus_per_video: int = DEFAULT_CPUS_PER_VIDEO) -> BatchResult:
    """rehab.batch.run_batch on Ray: ``address`` None starts a local Ray instance, else what ray.init takes
    (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``). Each video reserves ``cpus_per_video`` CPUs and uses as
    many threads. Raises BatchError when the batch cannot run (Ray missing or unreachable, a node that cannot
    take part), like run_batch; KeyboardInterrupt after cancelling the unfinished videos."""
    from rehab.runtime.model import DEFAULT_MODEL_PATH, PoseModel

    if not (isinstance(cpus_per_video, int) and cpus_per_video >= 1):
        raise ValueError(f"cpus_per_video must be an integer >= 1, got {cpus_per_video!r}")
    ray = import_ray()
    if address is not None and address != "auto":
        check_reachable(address)  # before hashing every video: a wrong address is an error in seconds
    options = options or BatchOptions()
    t0 = time.perf_counter()
    # Absolute: a node's working directory is not the driver's.
    out_dir = Path(out_dir).absolute()
    inputs = discover_videos([Path(p).absolute() for p in paths], exclude=[out_dir])
    if not inputs:
        raise BatchError("no videos to process: " + ", ".join(str(p) for p in paths))
    PoseModel.load(model_path, threads=1, allow_spinning=False)  # a bad model is one clear error here
    model_file = Path(model_path) if model_path is not None else DEFAULT_MODEL_PATH
    model_bytes = model_file.read_bytes()
    model_sha256 = hashlib.sha256(model_bytes).hexdigest()
    prepare_output_folder(out_dir)
    show = options.progress if options.progress is not None else sys.stderr.isatty()
    token_path = out_dir / f"{RUN_TOKEN_PREFIX}{secrets.token_hex(8)}"
    slots = 0  # no Ray is started when every video is already complete or cannot start
    with OutputLock(out_dir), contextlib.ExitStack() as stack:
        if show:
            from tqdm.contrib.logging import logging_redirect_tqdm

            stack.enter_context(logging_redirect_tqdm())
        # Staging folders and run tokens of earlier runs belong to runs that are gone (we hold the lock).
        shutil.rmtree(out_dir / STAGING_DIR, ignore_errors=True)
        for stale in out_dir.glob(f"{RUN_TOKEN_PREFIX}*"):
            stale.unlink(missing_ok=True)
        jobs, results = plan_jobs(inputs, out_dir, options, model_sha256)
        for result in results.values():
            log_result(result)
        if jobs:
            _connect(ray, address, usable_cpus())
            stack.callback(ray.shutdown)
            token_path.write_text(f"rehab process --engine ray, driver {socket.gethostname()} pid {os.getpid()}\n",
                                  encoding="utf-8")
            stack.callback(token_path.unlink, missing_ok=True)
            slots = _slots(ray, cpus_per_video)
            nodes = probe_nodes(ray, token_path, [job.source for job in jobs])
            logger.info("Ray: %d node(s), %d video(s) at a time (%d CPU(s) each); model %s (sha256 %s) sent "
                        "through the object store", nodes, slots, cpus_per_video, model_file.name, model_sha256[:12])
        bars = ProgressBars(show, len(inputs))
        for result in results.values():
            bars.finish(-1, result)
        try:
            if jobs:
                results.update(_run_tasks(ray, jobs, ray.put(model_bytes), model_file.name, cpus_per_video,
                                          str(token_path), bars))
        finally:
            bars.close()
        shutil.rmtree(out_dir / STAGING_DIR, ignore_errors=True)
    batch = BatchResult(results=tuple(results[i] for i in range(len(inputs))), elapsed_s=time.perf_counter() - t0,
                        workers=slots)
    logger.info("batch on Ray: %d done, %d skipped, %d failed in %.1f s (%.2f videos/min, %.1f frames/s)",
                len(batch.with_status(VideoStatus.DONE)), len(batch.with_status(VideoStatus.SKIPPED)), len(batch.failed),
                batch.elapsed_s, batch.videos_per_minute, batch.frames_per_second)
    return batch


def _slots(ray, cpus_per_video: int) -> int:
    """Videos the cluster runs at once; BatchError when no node has cpus_per_video CPUs (Ray would wait for
    ever for such a node)."""
    node_cpus = [n.get("Resources", {}).get("CPU", 0.0) for n in ray.nodes() if n.get("Alive")]
    largest = max(node_cpus, default=0.0)
    if largest < cpus_per_video:
        raise BatchError(f"--cpus-per-video {cpus_per_video}, but the largest node of the Ray cluster has "
                         f"{largest:g} CPU(s): ask for at most {int(largest)}")
    return max(1, sum(int(c // cpus_per_video) for c in node_cpus))


def _run_tasks(ray, jobs: Sequence[Job], model_ref, model_file_name: str, cpus_per_video: int, token_path: str,
               bars: ProgressBars) -> dict[int, VideoResult]:
    remote = ray.remote(process_on_node)
    results: dict[int, VideoResult] = {}
    # Largest files first: a long video started last would run alone at the end while the other CPUs idle.
    pending = {}
    for job in sorted(jobs, key=job_size_bytes, reverse=True):
        task = remote.options(name=f"rehab:{Path(job.output_dir).name}", num_cpus=cpus_per_video,
                              memory=TASK_MEMORY_BYTES, max_retries=MAX_RETRIES, retry_exceptions=False)
        pending[task.remote(job, [model_ref], model_file_name, cpus_per_video, token_path)] = job
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_INTERVAL_S)
            for ref in ready:
                job = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    result = failed_result(job, job.output_dir, describe_ray_error(ray, exc))
                results[job.index] = result
                bars.finish(job.index, result)
                log_result(result)
    except KeyboardInterrupt:
        logger.warning("interrupted: cancelling %d unfinished video(s); finished ones are kept, and running the "
                       "same command again finishes the rest", len(pending))
        cancel(ray, list(pending))
        raise
    return results


def cancel(ray, refs: Sequence[Any], grace_s: float = CANCEL_GRACE_S) -> None:
    """Cancel tasks: queued ones at once, running ones by a KeyboardInterrupt in the task (process_video then
    deletes its staging folder), and those still running after ``grace_s`` by killing their worker."""
    for ref in refs:
        with contextlib.suppress(Exception):
            ray.cancel(ref)
    if not refs:
        return
    _, still_running = ray.wait(list(refs), num_returns=len(refs), timeout=grace_s)
    for ref in still_running:
        with contextlib.suppress(Exception):
            ray.cancel(ref, force=True)

"""Batch processing of recorded sessions: every video of a folder through the one pipeline, nothing ever lost.

For each video ``<out>/<name>/`` receives (rehab.video_job.process_video; file names in rehab.outputs):

- ``annotated.mp4``   H.264, anonymised, skeleton + angles + repetitions drawn (the pipeline's frames);
- ``frames.csv`` and ``frames.parquet``   one row per processed frame: time, keypoints, scores, every angle;
- ``summary.json``    repetitions (range of motion, duration, symmetry), per-angle statistics, frames with a
  pose, the source file, the model and the settings used;
- ``report.html``     a self-contained page for the clinician (``report.pdf`` too unless turned off);
- ``DONE.json``       the completion record: the options that produced the folder and the size and SHA-256 of
  every file above.

Nothing is lost, ever: a video's outputs are built in ``<out>/.partial/<name>.<pid>/`` and the whole folder is
renamed to ``<out>/<name>`` only once every file (DONE.json last) is written and flushed to disk. So a folder
under its final name is complete, and a run killed at any moment (even by SIGKILL) leaves at most staging
folders, which the next run deletes. A re-run skips videos whose folder is complete for the same options (its
DONE.json matches and every file's checksum verifies) and redoes the rest. One run at a time may write into an
output folder (an advisory lock, released by the OS even when the holder is killed).

Videos run in parallel in worker processes (spawned: ONNX Runtime sessions cannot be pickled or forked safely),
each loading the model once with ``cpu_count // workers`` threads. A video that fails (unreadable, truncated,
no frames, no room to write) is recorded with its reason and the others go on; a worker process that dies
(out of memory, a decoder crash) costs only the video it was on, which is retried once on its own.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path
from queue import Empty

from rehab.batch_inputs import VideoInput, discover_videos
from rehab.batch_progress import ProgressBars, log_result
from rehab.batch_worker import init_worker, worker_run
from rehab.outputs import STAGING_DIR, check_complete, sha256_file
from rehab.video_job import (
    BatchOptions,
    Job,
    OutputFolderError,
    VideoResult,
    VideoStatus,
    check_output_target,
    describe_error,
    failed_result,
    output_fingerprint,
    run_job,
)

logger = logging.getLogger(__name__)

LOCK_FILE = ".rehab-batch.lock"
# How often the parent collects finished videos and progress reports from the workers.
POLL_INTERVAL_S = 0.1


class BatchError(Exception):
    """The batch as a whole cannot run (no inputs, an output folder that cannot be written, a run in progress)."""


@dataclass(frozen=True)
class BatchResult:
    results: tuple[VideoResult, ...]
    elapsed_s: float
    workers: int

    def with_status(self, status: VideoStatus) -> list[VideoResult]:
        return [r for r in self.results if r.status == status]

    @property
    def failed(self) -> list[VideoResult]:
        return self.with_status(VideoStatus.FAILED)

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def frames_processed(self) -> int:
        return sum(r.frames for r in self.with_status(VideoStatus.DONE))

    @property
    def videos_per_minute(self) -> float:
        done = len(self.with_status(VideoStatus.DONE))
        return done * 60.0 / self.elapsed_s if self.elapsed_s > 0 else math.nan

    @property
    def frames_per_second(self) -> float:
        return self.frames_processed / self.elapsed_s if self.elapsed_s > 0 else math.nan


class OutputLock:
    """An exclusive advisory lock on the output folder; the OS drops it when the holder dies."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / LOCK_FILE
        self._file = None

    def __enter__(self) -> "OutputLock":
        self._file = open(self.path, "a+")  # held for the whole batch
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks here; one run at a time is up to the user
            return self
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._file.close()
            raise BatchError(f"another `rehab process` is writing to {self.path.parent} (it holds {self.path}); "
                             "wait for it to finish or choose another --out") from None
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()


def prepare_output_folder(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise BatchError(f"cannot write to the output folder {out_dir}: {exc.strerror or exc}") from None


def plan_jobs(inputs: Sequence[VideoInput], out_dir: Path, options: BatchOptions, model_sha256: str
          ) -> tuple[list[Job], dict[int, VideoResult]]:
    """Which videos need processing; the others are already complete (skipped) or cannot start (failed)."""
    jobs: list[Job] = []
    settled: dict[int, VideoResult] = {}
    for index, item in enumerate(inputs):
        target = out_dir / item.name
        if not item.source.exists():
            settled[index] = failed_result(item, target, f"{item.source}: file not found")
            continue
        if not item.source.is_file():
            settled[index] = failed_result(item, target, f"{item.source}: not a regular file")
            continue
        try:
            source_sha256 = sha256_file(item.source)
            check_output_target(target)
        except OutputFolderError as exc:
            settled[index] = failed_result(item, target, str(exc))
            continue
        except OSError as exc:
            settled[index] = failed_result(item, target, f"{item.source}: cannot be read ({exc.strerror or exc})")
            continue
        fingerprint = output_fingerprint(source_sha256, model_sha256, options)
        reason = check_complete(target, fingerprint)
        if reason is None and not options.force:
            settled[index] = VideoResult(source=str(item.source), name=item.name, status=VideoStatus.SKIPPED,
                                         output_dir=str(target), message="outputs already complete")
            continue
        note = "redone: --force" if reason is None else (
            f"redone: earlier outputs {reason}" if target.exists() else "")
        jobs.append(Job(index=index, source=str(item.source), output_dir=str(target), options=options,
                         source_sha256=source_sha256, model_sha256=model_sha256, note=note))
    return jobs, settled


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity mask: a container or taskset may allow fewer than the
    machine has)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        return max(1, os.cpu_count() or 1)


def capped_workers(workers: int) -> int:
    """``workers``, or the usable core count when more were asked for (logged): each worker process holds
    its own model and buffers (~0.4 GB), and more processes than cores only compete for them."""
    cores = usable_cpus()
    if workers > cores:
        logger.warning("%d workers asked for, but only %d CPU cores are usable here: using %d workers",
                       workers, cores, cores)
        return cores
    return workers


def worker_threads(workers: int) -> int:
    """Intra-op threads per worker: the usable cores shared out, at least one each."""
    return max(1, usable_cpus() // workers)


def run_batch(paths: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str],
              options: BatchOptions | None = None, model_path: str | os.PathLike[str] | None = None) -> BatchResult:
    """Process every video of ``paths`` (files and folders) into ``out_dir``; see the module docstring.

    Raises BatchError when nothing can run at all (no videos, output folder not writable, another run on
    the same folder), FileNotFoundError / ValueError for a missing or invalid model. Per-video failures are
    results with status "failed", never exceptions.
    """
    from rehab.runtime.model import DEFAULT_MODEL_PATH, PoseModel

    options = options or BatchOptions()
    options = replace(options, workers=capped_workers(options.workers))
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    inputs = discover_videos(paths, exclude=[out_dir])
    if not inputs:
        raise BatchError("no videos to process: " + ", ".join(str(p) for p in paths))
    threads = worker_threads(options.workers)
    # Loaded here even when workers load their own: a bad model is one clear error, not one per video.
    model = PoseModel.load(model_path, threads=threads, allow_spinning=False)
    resolved_model_path = Path(model_path) if model_path is not None else DEFAULT_MODEL_PATH
    model_sha256 = sha256_file(resolved_model_path)
    prepare_output_folder(out_dir)
    show = options.progress if options.progress is not None else sys.stderr.isatty()
    with OutputLock(out_dir), contextlib.ExitStack() as stack:
        if show:
            from tqdm.contrib.logging import logging_redirect_tqdm

            # Log lines are printed above the bars instead of through them.
            stack.enter_context(logging_redirect_tqdm())
        # Staging folders of earlier runs belong to runs that are gone (we hold the lock).
        shutil.rmtree(out_dir / STAGING_DIR, ignore_errors=True)
        jobs, results = plan_jobs(inputs, out_dir, options, model_sha256)
        for result in results.values():
            log_result(result)
        bars = ProgressBars(show, len(inputs))
        for result in results.values():
            bars.finish(-1, result)
        names = {job.index: Path(job.output_dir).name for job in jobs}
        in_process = options.workers == 1 or len(jobs) <= 1
        try:
            if in_process:
                if threads != worker_threads(1):
                    # One video left to do: it gets all the cores, not a worker's share.
                    threads = worker_threads(1)
                    model = PoseModel.load(model_path, threads=threads, allow_spinning=False)
                for job in jobs:
                    result = run_job(job, model, threads, lambda d, t, i=job.index: bars.update(i, names[i], d, t))
                    results[job.index] = result
                    bars.finish(job.index, result)
                    log_result(result)
            else:
                del model  # the workers load their own
                results.update(_run_in_workers(jobs, options.workers, resolved_model_path, threads, bars, names))
        finally:
            bars.close()
        shutil.rmtree(out_dir / STAGING_DIR, ignore_errors=True)
    batch = BatchResult(results=tuple(results[i] for i in range(len(inputs))), elapsed_s=time.perf_counter() - t0,
                        workers=1 if in_process else min(options.workers, len(jobs)))
    logger.info("batch: %d done, %d skipped, %d failed in %.1f s (%.2f videos/min, %.1f frames/s)",
                len(batch.with_status(VideoStatus.DONE)), len(batch.with_status(VideoStatus.SKIPPED)), len(batch.failed),
                batch.elapsed_s, batch.videos_per_minute, batch.frames_per_second)
    return batch


def _run_in_workers(jobs: Sequence[Job], workers: int, model_path: Path, threads: int, bars: ProgressBars,
                    names: Mapping[int, str]) -> dict[int, VideoResult]:
    """Jobs in a pool of spawned processes. When a worker dies, the pool breaks and every unfinished job with
    it: those that had started are retried one at a time, each in a fresh pool of its own (a video that kills
    its worker again then fails alone), and those still queued go into the next shared pool."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    level = logging.getLogger().getEffectiveLevel()
    worker_level = max(level, logging.WARNING) if bars.enabled else level
    results: dict[int, VideoResult] = {}
    # Largest files first: a long video started last would run alone at the end while the other workers idle.
    todo = sorted(jobs, key=job_size_bytes, reverse=True)
    isolate: list[Job] = []
    while todo or isolate:
        isolated = not todo
        round_jobs = [isolate.pop(0)] if isolated else todo
        todo = []
        started: set[int] = set()
        finished_before = len(results)
        broken: list[Job] = []
        with ProcessPoolExecutor(max_workers=min(workers, len(round_jobs)), mp_context=ctx, initializer=init_worker,
                                 initargs=(str(model_path), threads, worker_level, queue)) as pool:
            futures = {pool.submit(worker_run, job): job for job in round_jobs}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=POLL_INTERVAL_S, return_when=FIRST_COMPLETED)
                _drain(queue, bars, names, started)
                for future in done:
                    job = futures[future]
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        broken.append(job)
                        continue
                    except Exception as exc:  # noqa: BLE001 - e.g. a result that could not be sent back
                        result = failed_result(job, job.output_dir, describe_error(exc))
                    _settle(results, job, result, bars)
        _drain(queue, bars, names, started)
        if isolated:
            # Alone in its pool, a job whose worker died is the cause.
            for job in broken:
                _settle(results, job, failed_result(job, job.output_dir, "the worker process died while processing it "
                                              "(out of memory, a crash in the video decoder, or the worker "
                                              "could not start)"), bars)
            continue
        suspects = [job for job in broken if job.index in started]
        if not suspects and len(results) == finished_before:
            suspects = broken  # no word from any worker: try each job alone
        for job in broken:
            if job in suspects:
                logger.warning("a worker process died while on %s; retrying it on its own", job.source)
                isolate.append(job)
            else:
                todo.append(job)  # was only queued: not a suspect
    return results


def job_size_bytes(job: Job) -> int:
    try:
        return Path(job.source).stat().st_size
    except OSError:
        return 0


def _settle(results: dict[int, VideoResult], job: Job, result: VideoResult, bars: ProgressBars) -> None:
    results[job.index] = result
    bars.finish(job.index, result)
    log_result(result)


def _drain(queue, bars: ProgressBars, names: Mapping[int, str], started: set[int]) -> None:
    while True:
        try:
            index, done, total = queue.get_nowait()
        except Empty:
            return
        except (EOFError, OSError):
            return
        started.add(index)
        if index in names:
            bars.update(index, names[index], done, total)



"""The worker processes of the local batch engine: each loads the model once and runs jobs sent to it.

Spawned (ONNX Runtime sessions cannot be pickled or forked safely); a worker reports progress through a
queue and exits by itself when the batch that started it has died.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rehab.video_job import Job, VideoResult, run_job

# A worker checks this often that the batch that started it is still alive, and exits when it is not: a
# killed run must not leave orphans computing (or idling for ever, holding the output pipes open).
PARENT_CHECK_INTERVAL_S = 0.5
EXIT_ORPHANED = 3

if TYPE_CHECKING:
    from rehab.runtime.model import PoseModel


@dataclass(frozen=True)
class _WorkerContext:
    model: PoseModel
    threads: int
    queue: Any  # multiprocessing.Queue of (job index, frames done, frames expected)


# A pool's tasks reach only what its initializer left in their process: the model, loaded once per worker
# process. Set by init_worker in each worker, never in the batch process.
_context: list[_WorkerContext] = []


def init_worker(model_path: str, threads: int, log_level: int, queue) -> None:
    import cv2

    from rehab.runtime.model import PoseModel

    logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
    threading.Thread(target=_exit_when_orphaned, name="orphan-watchdog", daemon=True).start()
    cv2.setNumThreads(threads)
    _context[:] = [_WorkerContext(model=PoseModel.load(model_path, threads=threads, allow_spinning=False),
                                  threads=threads, queue=queue)]


def _exit_when_orphaned() -> None:
    """Exit this worker once the batch process that spawned it has died (e.g. SIGKILL): its partial outputs
    stay in the staging folder, which the next run deletes."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    while parent.is_alive():
        time.sleep(PARENT_CHECK_INTERVAL_S)
    os._exit(EXIT_ORPHANED)


def worker_run(job: Job) -> VideoResult:
    context = _context[0]

    def progress(done: int, total: int) -> None:
        context.queue.put((job.index, done, total))

    progress(0, 0)  # "started": tells the parent which videos a worker that dies may have been on
    return run_job(job, context.model, context.threads, progress)


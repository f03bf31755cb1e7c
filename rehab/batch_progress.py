"""What a batch shows while it runs: progress bars on stderr and one log line per video."""

from __future__ import annotations

import logging
import shutil
from typing import Any

from rehab.video_job import VideoResult, VideoStatus

logger = logging.getLogger(__name__)

class ProgressBars:
    """An overall bar (videos) and one bar per video being processed (frames), on stderr."""

    def __init__(self, enabled: bool, total_videos: int) -> None:
        self.enabled = enabled
        self._bars: dict[int, Any] = {}
        self._free_positions: list[int] = []
        self._overall = None
        if enabled:
            from tqdm.auto import tqdm

            self._tqdm = tqdm
            # shutil falls back to 80 columns where the terminal reports no size (a pty without a window).
            self._ncols = shutil.get_terminal_size().columns
            self._overall = tqdm(total=total_videos, desc="videos", unit="video", position=0, ncols=self._ncols)

    def update(self, index: int, name: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        bar = self._bars.get(index)
        if bar is None:
            position = self._free_positions.pop(0) if self._free_positions else len(self._bars) + 1
            bar = self._tqdm(total=total or None, desc=name, unit="frame", position=position, leave=False,
                             ncols=self._ncols)
            bar.position_ = position
            self._bars[index] = bar
        if total and bar.total != total:
            bar.total = total
        bar.update(max(0, done - bar.n))

    def finish(self, index: int, result: VideoResult) -> None:
        if not self.enabled:
            return
        bar = self._bars.pop(index, None)
        if bar is not None:
            self._free_positions.append(bar.position_)
            self._free_positions.sort()
            bar.close()
        self._overall.update(1)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        if self._overall is not None:
            self._overall.close()


def log_result(result: VideoResult) -> None:
    """One line per video: the clear error line of a failure, or where the outputs are."""
    if result.status == VideoStatus.FAILED:
        # Video errors already start with the file's path.
        named = result.message.startswith(f"{result.source}: ")
        logger.error("FAILED %s", result.message if named else f"{result.source}: {result.message}")
    elif result.status == VideoStatus.SKIPPED:
        logger.info("skipped %s: complete outputs in %s", result.source, result.output_dir)
    else:
        notes = "; ".join(filter(None, (result.truncated, result.message)))
        logger.info("done %s -> %s: %d frames (%d with a pose), %d repetitions in %.1f s%s", result.source,
                    result.output_dir, result.frames, result.frames_with_pose, result.repetitions, result.elapsed_s,
                    f" ({notes})" if notes else "")


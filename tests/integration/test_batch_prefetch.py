"""Batch processing decodes on a reader thread (rehab.runtime.video.prefetch): same outputs, no leaked thread."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import pytest

from rehab.outputs import FRAMES_CSV, SUMMARY_JSON
from rehab.runtime.video import PREFETCH_THREAD_NAME, VideoError
from rehab.video_job import BatchOptions, Cancelled, process_video
from tests.synthetic_clips import ClipSpec, write_clip

pytest.importorskip("onnx")
from tests.e2e.browser_support import write_tiny_pose_model

FPS = 15.0


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from rehab.runtime.model import PoseModel

    path = write_tiny_pose_model(tmp_path_factory.mktemp("model") / "tiny.onnx")
    return PoseModel.load(path, providers="cpu", threads=1)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clips") / "squats.mp4",
                      ClipSpec(width=256, height=192, fps=FPS, seconds=2.0))


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == PREFETCH_THREAD_NAME and t.is_alive()]


def test_outputs_are_the_same_with_and_without_the_reader_thread(tmp_path, clip, model):
    options = BatchOptions(exercise="squat", pdf=False)
    ahead = process_video(clip, tmp_path / "ahead", model, options, threads=1)
    inline = process_video(clip, tmp_path / "inline", model, options, threads=1, prefetch_frames=0)
    assert ahead.frames == inline.frames == int(2.0 * FPS)
    assert (tmp_path / "ahead" / FRAMES_CSV).read_bytes() == (tmp_path / "inline" / FRAMES_CSV).read_bytes()
    assert (tmp_path / "ahead" / SUMMARY_JSON).is_file()
    assert not prefetch_threads()


def test_early_stops_and_errors_leave_no_reader_thread(tmp_path, clip, model):
    # max_seconds breaks out of the loop; should_stop raises Cancelled in it.
    short = process_video(clip, tmp_path / "short", model, BatchOptions(max_seconds=0.5, pdf=False), threads=1)
    assert short.frames == math.ceil(0.5 * FPS) and not prefetch_threads()
    with pytest.raises(Cancelled):
        process_video(clip, tmp_path / "stopped", model, BatchOptions(pdf=False), threads=1, should_stop=lambda: True)
    assert not prefetch_threads() and not (tmp_path / "stopped").exists()

    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    with pytest.raises(VideoError, match=r"truncated: only \d+ of the \d+ frames|decoding failed after \d+ frames"):
        process_video(cut, tmp_path / "cut", model, BatchOptions(pdf=False), threads=1)
    assert not prefetch_threads() and not (tmp_path / "cut").exists()

"""Video in/out: codecs, rotation metadata, H.264 output for browsers, clear errors, frame validation."""

from __future__ import annotations

import contextlib
import gc
import threading
from pathlib import Path

import av
import numpy as np
import pytest

from rehab.runtime.image import as_bgr_frame
from rehab.runtime.video import (
    PREFETCH_THREAD_NAME,
    VideoError,
    VideoNotFoundError,
    VideoReader,
    VideoWriter,
    prefetch,
    probe_video,
    read_frames,
    rotate_upright,
)


def marker_frame(i: int, w: int = 96, h: int = 64) -> np.ndarray:
    """A grey frame with a white block in the top-left corner and a bar that moves with ``i``."""
    img = np.full((h, w, 3), 60, np.uint8)
    img[:16, :16] = 255
    img[h // 2:, (i * 4) % w:(i * 4) % w + 6] = (0, 0, 255)
    return img


def encode(path: Path, codec: str, frames: list[np.ndarray], fps: int = 30, rotation: int | None = None,
           pix_fmt: str = "yuv420p", container_format: str | None = None) -> Path:
    with av.open(str(path), "w", format=container_format) as c:
        s = c.add_stream(codec, rate=fps)
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = pix_fmt
        if rotation is not None:
            s.set_display_rotation(rotation)
        for img in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.mark.parametrize("codec, suffix, pix_fmt", [
    ("libx264", ".mp4", "yuv420p"),
    ("libvpx-vp9", ".webm", "yuv420p"),
    ("mjpeg", ".avi", "yuvj420p"),
])
@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_reads_common_codecs(tmp_path, codec, suffix, pix_fmt, backend):
    frames = [marker_frame(i) for i in range(12)]
    path = encode(tmp_path / f"clip{suffix}", codec, frames, pix_fmt=pix_fmt)
    with VideoReader(path, backend=backend) as reader:
        got = list(reader)
        assert reader.info.backend == backend
        assert (reader.info.width, reader.info.height) == (96, 64)
    assert len(got) == 12
    times = [t for _, t in got]
    assert times[0] == 0.0 and np.allclose(np.diff(times), 1 / 30, atol=2e-3)
    assert got[0][0].shape == (64, 96, 3) and got[0][0].dtype == np.uint8
    assert got[0][0][4, 4].min() > 200  # the white corner survived the codec


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_phone_rotation_metadata_is_applied(tmp_path, rotation):
    path = encode(tmp_path / "phone.mp4", "libx264", [marker_frame(i) for i in range(4)], rotation=rotation)
    info = probe_video(path)
    assert info.rotation_deg % 360 == rotation % 360
    frame, _ = next(iter(VideoReader(path)))
    expected = rotate_upright(marker_frame(0), rotation)
    assert frame.shape == expected.shape
    assert (info.width, info.height) == (expected.shape[1], expected.shape[0])
    # Where the white corner block went is where the rotation puts it.
    assert np.abs(frame.astype(int) - expected.astype(int)).mean() < 8


def test_rotate_upright_is_counter_clockwise():
    img = np.zeros((2, 3), np.uint8)
    img[0, 0] = 1  # top-left
    assert rotate_upright(img, 90)[-1, 0] == 1  # a quarter turn counter-clockwise moves it to bottom-left
    assert rotate_upright(img, -90)[0, -1] == 1
    assert rotate_upright(img, 180)[-1, -1] == 1
    assert rotate_upright(img, 0) is img


def test_writer_makes_browser_playable_h264(tmp_path):
    out = tmp_path / "annotated.mp4"
    with VideoWriter(out, fps=25) as writer:
        for i in range(20):
            writer.write(marker_frame(i, w=101, h=75))  # odd sizes: padded to even for yuv420p
        # The encoder has written its first packets, under a temporary name only.
        assert [p.name.endswith(".partial.mp4") for p in tmp_path.iterdir()] == [True]
    assert out.exists() and not list(tmp_path.glob("*.partial.mp4"))
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264"
        assert s.codec_context.pix_fmt == "yuv420p"
        assert (s.width, s.height) == (102, 76)
        assert float(s.average_rate) == pytest.approx(25)
    data = out.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat"), "faststart: the index comes first so browsers can stream"
    frames = list(read_frames(out))
    assert len(frames) == 20
    # Lossy, and 4:2:0 halves the colour resolution at the red bar's edges: compare on average.
    assert np.abs(frames[-1][0][:75, :101].astype(int) - marker_frame(19, 101, 75).astype(int)).mean() < 4


def test_writer_error_leaves_no_file(tmp_path):
    out = tmp_path / "broken.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(out) as writer:
            writer.write(marker_frame(0))
            raise RuntimeError("boom")
    assert not out.exists() and not list(tmp_path.iterdir())


def test_writer_checks(tmp_path):
    with pytest.raises(ValueError, match=".mp4"):
        VideoWriter(tmp_path / "x.avi")
    with pytest.raises(VideoNotFoundError):
        VideoWriter(tmp_path / "missing" / "x.mp4")
    writer = VideoWriter(tmp_path / "x.mp4")
    writer.write(marker_frame(0))
    with pytest.raises(ValueError, match="size"):
        writer.write(marker_frame(0, w=64, h=64))
    writer.close()
    with pytest.raises(VideoError, match="no frames"):
        VideoWriter(tmp_path / "empty.mp4").close()


def test_clear_errors_for_bad_files(tmp_path):
    with pytest.raises(VideoNotFoundError, match="not found") as err:
        VideoReader(tmp_path / "nope.mp4")
    assert isinstance(err.value, FileNotFoundError) and err.value.path.endswith("nope.mp4")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoError, match="empty"):
        VideoReader(empty)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n" * 20)
    with pytest.raises(VideoError, match="cannot be read as video") as err:
        VideoReader(text)
    assert "notes.mp4" in str(err.value)
    with pytest.raises(VideoError, match="not a regular file"):
        VideoReader(tmp_path)


def test_truncated_file_is_reported(tmp_path):
    full = tmp_path / "full.mp4"
    with VideoWriter(full, fps=30) as writer:
        for i in range(60):
            writer.write(marker_frame(i) + np.random.default_rng(i).integers(0, 30, (64, 96, 3), dtype=np.uint8))
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(VideoError, match="truncated"):
        for _ in VideoReader(cut):
            pass
    # Opted in, the readable part is still usable.
    assert 0 < sum(1 for _ in VideoReader(cut, allow_truncated=True)) < 60
    head_only = tmp_path / "head.mp4"
    head_only.write_bytes(data[:200])
    with pytest.raises(VideoError):
        for _ in VideoReader(head_only):
            pass


def test_frame_validation():
    bgr = np.zeros((4, 5, 3), np.uint8)
    assert as_bgr_frame(bgr) is bgr
    assert as_bgr_frame(np.zeros((4, 5), np.uint8)).shape == (4, 5, 3)
    assert as_bgr_frame(np.zeros((4, 5, 1), np.uint8)).shape == (4, 5, 3)
    assert as_bgr_frame(np.zeros((4, 5, 4), np.uint8)).shape == (4, 5, 3)
    with pytest.raises(ValueError, match=r"frame must have dtype uint8.*float32"):
        as_bgr_frame(np.zeros((4, 5, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\).*\(4, 5, 2\)"):
        as_bgr_frame(np.zeros((4, 5, 2), np.uint8))
    with pytest.raises(ValueError, match="empty"):
        as_bgr_frame(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(ValueError, match="numpy array"):
        as_bgr_frame([[1, 2]])
    with pytest.raises(ValueError, match=r"\(2, 4, 5, 3\)"):
        as_bgr_frame(np.zeros((2, 4, 5, 3), np.uint8))


def test_real_clips_h264_and_vp9(shared_dir, require_data):
    for name, codec in (("pose2sim_balancing_cam01.mp4", "h264"), ("pose2sim_balancing_cam02.mp4", "vp9")):
        path = require_data(shared_dir / "videos" / name)
        info = probe_video(path)
        assert (info.codec, info.width, info.height, info.fps, info.frame_count) == (codec, 1080, 1920, 60.0, 100)
        frames = list(read_frames(path, every=25, max_side_px=480))
        assert len(frames) == 4 and frames[0][0].shape == (480, 270, 3)
        assert [round(t, 3) for _, t in frames] == [0.0, 0.417, 0.833, 1.25]


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == PREFETCH_THREAD_NAME and t.is_alive()]


def noisy_clip(path: Path, frames: int = 60) -> Path:
    """An H.264 clip whose frames differ (noise defeats the encoder's skipping), so truncation loses frames."""
    with VideoWriter(path, fps=30) as writer:
        for i in range(frames):
            writer.write(marker_frame(i) + np.random.default_rng(i).integers(0, 30, (64, 96, 3), dtype=np.uint8))
    return path


@pytest.mark.parametrize("codec, suffix, pix_fmt", [("libx264", ".mp4", "yuv420p"), ("mjpeg", ".avi", "yuvj420p")])
def test_prefetched_frames_are_identical(tmp_path, codec, suffix, pix_fmt):
    path = encode(tmp_path / f"clip{suffix}", codec, [marker_frame(i) for i in range(20)], pix_fmt=pix_fmt)
    with VideoReader(path) as reader:
        direct = list(reader)
    with VideoReader(path) as reader:
        ahead = list(prefetch(reader, depth=3))
    assert len(ahead) == len(direct) == 20
    for (a, ta), (b, tb) in zip(direct, ahead):
        assert ta == tb and a.dtype == b.dtype and np.array_equal(a, b)
    assert not prefetch_threads()  # ended with the source


def test_stopping_early_joins_the_reader_thread(tmp_path):
    path = noisy_clip(tmp_path / "clip.mp4", frames=40)
    before = len(prefetch_threads())
    with VideoReader(path) as reader:
        frames = prefetch(reader, depth=2)
        assert not prefetch_threads()  # nothing starts before the first frame is asked for
        for _ in range(3):
            next(frames)
        assert len(prefetch_threads()) == before + 1
        frames.close()
        assert not prefetch_threads()  # joined by close(), before the reader is closed

    # The batch idiom: a break (or an exception) inside ``with contextlib.closing(...)``.
    with VideoReader(path) as reader, contextlib.closing(prefetch(reader)) as frames:
        for i, _ in enumerate(frames):
            if i == 5:
                break
    assert not prefetch_threads()

    # Dropped without close(): the generator's finaliser stops the thread too.
    with VideoReader(path) as reader:
        frames = prefetch(reader, depth=2)
        next(frames)
        del frames
        gc.collect()
        assert not prefetch_threads()


def test_truncated_file_raises_the_same_error_in_the_consumer(tmp_path):
    data = noisy_clip(tmp_path / "full.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])

    def frames_until_error(wrap) -> tuple[int, VideoError]:
        seen = 0
        with pytest.raises(VideoError, match="truncated") as err, VideoReader(cut) as reader:
            for _ in wrap(reader):
                seen += 1
        return seen, err.value

    plain, plain_error = frames_until_error(iter)
    consumer = threading.current_thread()
    raised_in: list[threading.Thread] = []

    def wrap(reader):
        for item in prefetch(reader, depth=4):
            raised_in.append(threading.current_thread())
            yield item

    ahead, ahead_error = frames_until_error(wrap)
    assert 0 < ahead == plain < 60  # every readable frame first, then the error
    assert type(ahead_error) is type(plain_error) and str(ahead_error) == str(plain_error)
    assert set(raised_in) == {consumer}
    assert not prefetch_threads()


def test_prefetch_passes_on_any_source_error_after_its_items():
    def source():
        yield 1
        yield 2
        raise KeyError("decoder broke")

    items = prefetch(source(), depth=1)
    assert next(items) == 1 and next(items) == 2
    with pytest.raises(KeyError, match="decoder broke"):
        next(items)
    assert not prefetch_threads()
    assert list(prefetch(iter(range(10)), depth=3)) == list(range(10))
    with pytest.raises(ValueError, match="depth"):
        prefetch([], depth=0)

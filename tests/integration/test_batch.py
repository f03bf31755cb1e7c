"""Batch processing on generated clips with a tiny real ONNX model: every output, re-runs, bad and unusual inputs.

The model (average pooling + a 1x1 convolution, random weights) finds meaningless poses in milliseconds, so
these tests exercise the real decode -> pipeline -> encode -> tables -> report -> publish path on two busy
cores in seconds. tests/integration/test_batch_real.py runs the default model on the real sample clips.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

from rehab.analysis.exercises import get_exercise
from rehab.batch import BatchError, run_batch
from rehab.batch_cli import format_table
from rehab.core.skeleton import LSP14
from rehab.outputs import DONE_FILE, OUTPUT_FILES, STAGING_DIR, check_complete
from rehab.video_job import BatchOptions
from tests.synthetic_clips import ClipSpec, write_clip

pytest.importorskip("onnx")
from tests.e2e.browser_support import write_tiny_pose_model  # noqa: E402

FPS = 15.0


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return write_tiny_pose_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    write_clip(folder / "squats.mp4", ClipSpec(width=320, height=240, fps=FPS, seconds=3.0))
    write_clip(folder / "short.mp4", ClipSpec(width=256, height=192, fps=FPS, seconds=1.0))
    return folder


def decode_h264(path: Path) -> tuple[int, int, int]:
    """(frames, width, height) of an H.264 file, decoding every frame."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == "h264"
        count = sum(1 for _ in c.decode(stream))
        return count, stream.width, stream.height


@pytest.fixture(scope="module")
def squat_run(tmp_path_factory, clips, model_path):
    out = tmp_path_factory.mktemp("out")
    result = run_batch([clips], out, BatchOptions(exercise="squat"), model_path=model_path)
    return out, result


def test_every_output_is_written_and_consistent(squat_run, clips):
    out, batch = squat_run
    assert batch.ok and [r.status for r in batch.results] == ["done", "done"]
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["short", "squats"]
    assert not (out / STAGING_DIR).exists(), "staging folders are cleaned up"
    folder = out / "squats"
    assert sorted(p.name for p in folder.iterdir()) == sorted(OUTPUT_FILES)

    frames, w, h = decode_h264(folder / "annotated.mp4")
    table = pd.read_csv(folder / "frames.csv")
    parquet = pd.read_parquet(folder / "frames.parquet")
    summary = json.loads((folder / "summary.json").read_text())
    assert frames == len(table) == len(parquet) == summary["processing"]["frames"] == int(3.0 * FPS)
    assert (w, h) == (320, 240)
    with av.open(str(folder / "annotated.mp4")) as c:
        assert float(c.streams.video[0].average_rate) == pytest.approx(FPS)

    # Per frame: time, keypoints, scores and every angle.
    angles = [c for c in table.columns if c.endswith("_deg")]
    assert {"frame", "time_s", "person_found"} <= set(table.columns)
    for joint in LSP14.joints:
        assert {f"{joint}_x_px", f"{joint}_y_px", f"{joint}_score", f"{joint}_reliable"} <= set(table.columns)
    assert {"left_knee_flexion_deg", "right_knee_flexion_deg", "left_shoulder_abduction_deg", "trunk_lean_deg"} <= set(angles)
    assert np.allclose(table["time_s"], np.arange(len(table)) / FPS, atol=1e-3)
    assert list(parquet.columns) == list(table.columns)
    assert np.allclose(parquet["time_s"], table["time_s"], atol=1e-4)
    found = table["person_found"].to_numpy(bool)
    assert np.isnan(table.loc[~found, "left_knee_x_px"]).all()
    assert table["left_knee_score"].between(0, 1).all()

    # The summary: repetitions, per-angle statistics, frames with a pose, model, settings.
    assert summary["schema"] == "rehab.batch.summary/1"
    assert summary["source"]["file_name"] == "squats.mp4" and len(summary["source"]["sha256"]) == 64
    assert summary["processing"]["frames_with_pose"] == int(found.sum())
    assert summary["exercise"]["name"] == "squat"
    assert isinstance(summary["repetitions"], list) and summary["session"]["exercise"] == "squat"
    assert summary["session"]["count"] == len(summary["repetitions"])
    knee = summary["angles"]["left_knee_flexion"]
    measured = table["left_knee_flexion_deg"].dropna()
    assert knee["frames_measured"] == len(measured)
    if len(measured):
        assert knee["mean_deg"] == pytest.approx(measured.mean(), abs=1e-3)
        assert knee["min_deg"] <= knee["median_deg"] <= knee["max_deg"]
    assert summary["model"]["name"] == "tiny-test-model" and len(summary["model"]["sha256"]) == 64
    assert summary["settings"]["anonymize"]["enabled"] is True
    assert summary["options"]["exercise"]["name"] == "squat"

    html = (folder / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "<svg" in html and "Knee flexion" in html and "Repetitions" in html
    assert "data:image/jpeg;base64," in html
    # Self-contained: every src/href is inline data or the video next to it; web addresses only as the SVG
    # namespace names (never fetched).
    links = re.findall(r'(?:src|href|poster)="([^"]*)"', html)
    assert links and all(link.startswith(("data:", "#")) or link == "annotated.mp4" for link in links), links
    assert set(re.findall(r"https?://[^\s\"'<>]+", html)) <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
    assert "<script" not in html and "<link" not in html
    assert (folder / "report.pdf").read_bytes().startswith(b"%PDF")
    assert check_complete(folder) is None


def test_rerun_skips_complete_and_redoes_the_rest(squat_run, clips, model_path):
    out, _ = squat_run
    done_mtime = (out / "squats" / DONE_FILE).stat().st_mtime_ns
    # A damaged output (a file cut short by some other program) makes that video incomplete.
    csv = out / "short" / "frames.csv"
    csv.write_bytes(csv.read_bytes()[:100])
    again = run_batch([clips], out, BatchOptions(exercise="squat"), model_path=model_path)
    by_name = {r.name: r for r in again.results}
    assert by_name["squats"].status == "skipped"
    assert by_name["short"].status == "done" and "frames.csv" in by_name["short"].message
    assert (out / "squats" / DONE_FILE).stat().st_mtime_ns == done_mtime
    assert check_complete(out / "short") is None
    # Other options: the outputs no longer match what is asked for, so they are redone.
    other = run_batch([clips / "short.mp4"], out, BatchOptions(exercise="lateral_raise"), model_path=model_path)
    assert other.results[0].status == "done" and "exercise" in other.results[0].message
    assert json.loads((out / "short" / "summary.json").read_text())["exercise"]["name"] == "lateral_raise"


def make_bad_inputs(folder: Path, good: Path) -> dict[str, tuple[Path, str]]:
    """Each bad input and a pattern its error line must match."""
    folder.mkdir(parents=True, exist_ok=True)
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    truncated = folder / "cut_short.mp4"
    data = good.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    text = folder / "notes.mp4"
    text.write_text("session notes, not a video\n" * 50)
    zero = write_clip(folder / "zero_frames.mp4", ClipSpec(seconds=0))
    return {
        "empty": (empty, r"empty \(0 bytes\)"),
        "cut_short": (truncated, r"truncated: only \d+ of the \d+ frames|decoding failed after \d+ frames"),
        "notes": (text, r"cannot be read as video"),
        "zero_frames": (zero, r"no decodable video frame"),
        "does_not_exist": (folder / "does_not_exist.mp4", r"file not found"),
    }


def test_bad_inputs_fail_alone_with_a_clear_reason(tmp_path, clips, model_path):
    good = clips / "short.mp4"
    noisy = write_clip(tmp_path / "noisy.mp4", ClipSpec(width=256, height=192, fps=FPS, seconds=2.0))
    bad = make_bad_inputs(tmp_path / "bad", noisy)
    paths = [bad["empty"][0], bad["cut_short"][0], good, bad["notes"][0], bad["zero_frames"][0], bad["does_not_exist"][0]]
    out = tmp_path / "out"
    batch = run_batch(paths, out, BatchOptions(), model_path=model_path)
    by_name = {r.name: r for r in batch.results}
    assert [r.name for r in batch.results] == ["empty", "cut_short", "short", "notes", "zero_frames", "does_not_exist"]
    assert by_name["short"].status == "done" and check_complete(out / "short") is None
    assert not batch.ok and len(batch.failed) == 5
    for name, (path, pattern) in bad.items():
        r = by_name[name]
        assert r.status == "failed", name
        assert re.search(pattern, r.message), f"{name}: {r.message}"
        assert str(path) in r.message, f"{name}: the error line names the file: {r.message}"
        assert "\n" not in r.message
        assert not (out / name).exists(), f"{name}: no output folder for a failed video"
    assert not (out / STAGING_DIR).exists()


def test_truncated_file_can_be_processed_when_allowed(tmp_path, model_path):
    full = write_clip(tmp_path / "full.mp4", ClipSpec(width=256, height=192, fps=FPS, seconds=2.0))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 2 // 3])
    batch = run_batch([cut], tmp_path / "out", BatchOptions(allow_truncated=True, pdf=False), model_path=model_path)
    result = batch.results[0]
    assert result.status == "done", result.message
    assert 0 < result.frames < int(2.0 * FPS)
    assert not (tmp_path / "out" / "cut" / "report.pdf").exists()
    # Said everywhere a therapist looks, with the real numbers: the table's status, summary.json, the report.
    note = f"truncated: {result.frames} of {int(2.0 * FPS)} frames"
    assert result.truncated == note
    [line] = [row for row in format_table(batch).splitlines() if row.startswith("cut ")]
    assert f"done ({note})" in line
    summary = json.loads((tmp_path / "out" / "cut" / "summary.json").read_text())
    assert summary["truncated"] == {"decoded_frames": result.frames, "header_frames": int(2.0 * FPS), "message": note}
    assert note in (tmp_path / "out" / "cut" / "report.html").read_text()
    # A whole file is not called truncated.
    whole = run_batch([full], tmp_path / "out2", BatchOptions(allow_truncated=True, pdf=False), model_path=model_path)
    assert whole.results[0].truncated == ""
    assert json.loads((tmp_path / "out2" / "full" / "summary.json").read_text())["truncated"] is None


@pytest.mark.parametrize("name, spec, expected_size", [
    ("vp9.webm", ClipSpec(width=320, height=240, fps=FPS, seconds=1.0, codec="vp9"), (320, 240)),
    ("uhd_4k.mp4", ClipSpec(width=3840, height=2160, fps=FPS, seconds=0.2), (3840, 2160)),
    # Stored 640x360 with a 90 degree display rotation, as a phone held upright records.
    ("phone_portrait.mp4", ClipSpec(width=360, height=640, fps=FPS, seconds=1.0, rotation_deg=90), (360, 640)),
])
def test_unusual_but_valid_inputs(tmp_path, model_path, name, spec, expected_size):
    source = write_clip(tmp_path / name, spec)
    out = tmp_path / "out"
    batch = run_batch([source], out, BatchOptions(pdf=False), model_path=model_path)
    result = batch.results[0]
    assert result.status == "done", result.message
    frames, w, h = decode_h264(out / Path(name).stem / "annotated.mp4")
    assert frames == result.frames == spec.frame_count
    assert (w, h) == expected_size
    summary = json.loads((out / Path(name).stem / "summary.json").read_text())
    assert (summary["processing"]["frame_width"], summary["processing"]["frame_height"]) == expected_size


def test_max_seconds_stride_and_max_side(tmp_path, clips, model_path):
    options = BatchOptions(max_seconds=2.0, stride=3, max_side_px=160, pdf=False)
    batch = run_batch([clips / "squats.mp4"], tmp_path, options, model_path=model_path)
    assert batch.results[0].status == "done"
    table = pd.read_csv(tmp_path / "squats" / "frames.csv")
    assert len(table) == math.ceil(2.0 * FPS / 3)
    assert table["source_frame"].tolist() == list(range(0, int(2.0 * FPS), 3))
    frames, w, h = decode_h264(tmp_path / "squats" / "annotated.mp4")
    assert frames == len(table) and (w, h) == (160, 120)
    with av.open(str(tmp_path / "squats" / "annotated.mp4")) as c:
        assert float(c.streams.video[0].average_rate) == pytest.approx(FPS / 3)


def test_output_folder_without_write_permission(tmp_path, clips, model_path):
    # The tests run as root, which file permissions do not stop. /sys is a kernel filesystem where even root
    # cannot create a folder (EPERM), or it is mounted read-only (EROFS): either way the folder is unwritable.
    unwritable = Path("/sys/rehab-batch-test-out")
    if not Path("/sys").is_dir():
        pytest.skip("no /sys on this system to stand in for an unwritable folder")
    with pytest.raises(BatchError, match=r"cannot write to the output folder /sys/rehab-batch-test-out"):
        run_batch([clips / "short.mp4"], unwritable, BatchOptions(), model_path=model_path)
    # A file where the output folder should be: the same clear error.
    blocker = tmp_path / "out_is_a_file"
    blocker.write_text("not a folder")
    with pytest.raises(BatchError, match="cannot write to the output folder"):
        run_batch([clips / "short.mp4"], blocker, BatchOptions(), model_path=model_path)


def test_one_video_output_blocked_does_not_stop_the_others(tmp_path, clips, model_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "squats").write_text("a file where the video's output folder goes")
    (out / "short").mkdir()
    (out / "short" / "therapist_notes.txt").write_text("keep me")
    other = write_clip(tmp_path / "other.mp4", ClipSpec(width=256, height=192, fps=FPS, seconds=0.5))
    batch = run_batch([clips, other], out, BatchOptions(pdf=False), model_path=model_path)
    by_name = {r.name: r for r in batch.results}
    assert by_name["squats"].status == "failed" and "is not a folder" in by_name["squats"].message
    assert by_name["short"].status == "failed" and "therapist_notes.txt" in by_name["short"].message
    assert by_name["other"].status == "done"
    assert (out / "short" / "therapist_notes.txt").read_text() == "keep me", "nothing of the user's is deleted"


def test_options_are_checked(tmp_path):
    with pytest.raises(ValueError, match="unknown exercise 'squats'.*squat"):
        BatchOptions(exercise="squats")
    for bad in ({"stride": 0}, {"max_seconds": -1.0}, {"workers": 0}, {"max_side_px": 8}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            BatchOptions(**bad)
    assert get_exercise("lateral_raise").angles == ("left_shoulder_abduction", "right_shoulder_abduction")
    with pytest.raises(BatchError, match="no videos"):
        run_batch([tmp_path], tmp_path / "out", BatchOptions())


def test_two_workers_process_in_parallel_and_survive_a_killed_worker(tmp_path, model_path, caplog):
    """Spawned workers; one is SIGKILLed mid-video (as the OOM killer would): its video is retried, all finish."""
    import signal
    import threading
    import time

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(4):
        write_clip(folder / f"clip{i}.mp4", ClipSpec(width=256, height=192, fps=FPS, seconds=2.0))
    out = tmp_path / "out"
    killed: list[int] = []

    def kill_first_worker() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            staging = out / STAGING_DIR
            for entry in staging.glob("*.*") if staging.is_dir() else ():
                pid = int(entry.name.rsplit(".", 1)[1])
                if pid != os.getpid():
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_first_worker, daemon=True)
    killer.start()
    batch = run_batch([folder], out, BatchOptions(workers=2, pdf=False), model_path=model_path)
    killer.join()
    assert killed, "no worker was seen working"
    assert "a worker process died while on" in caplog.text
    assert [r.status for r in batch.results] == ["done"] * 4, [r.message for r in batch.results]
    for i in range(4):
        assert check_complete(out / f"clip{i}") is None
        frames, _, _ = decode_h264(out / f"clip{i}" / "annotated.mp4")
        assert frames == int(2.0 * FPS)

"""Two real sample clips end to end with the embedded default model, in two worker processes.

A portrait 1080x1920 60 fps H.264 clip (Pose2Sim balancing, cam01) and a landscape 1768x994 30 fps VP9 clip
(Sports2D demo), the first second of each at every second frame, so the test takes seconds on two cores.
Every output is checked: the video decodes as H.264 with as many frames as the tables have rows, the tables
have the keypoint and angle columns, the summary has every field, the report opens as a self-contained page.
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

from rehab.batch import run_batch
from rehab.outputs import OUTPUT_FILES, check_complete
from rehab.runtime.model import DEFAULT_MODEL_PATH
from rehab.video_job import BatchOptions

CLIPS = {
    # name: (codec, fps, displayed width, height)
    "pose2sim_balancing_cam01.mp4": ("h264", 60.0, 1080, 1920),
    "sports2d_demo.mp4": ("vp9", 30.0, 1768, 994),
}
MAX_SECONDS = 1.0
STRIDE = 2
# The person is in every frame of both clips; the default model should find them nearly always.
MIN_POSE_FRACTION = 0.8


@pytest.fixture(scope="module")
def default_model() -> Path:
    if not DEFAULT_MODEL_PATH.is_file():
        reason = f"no default pose model yet: {DEFAULT_MODEL_PATH} does not exist"
        if os.environ.get("REHAB_REQUIRE_DATA") == "1" or os.environ.get("REHAB_REQUIRE_MODEL") == "1":
            pytest.fail(reason + " (REHAB_REQUIRE_DATA=1 makes a missing model an error)")
        pytest.skip(reason)
    return DEFAULT_MODEL_PATH


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, shared_dir, require_data, default_model):
    sources = [require_data(shared_dir / "videos" / name) for name in CLIPS]
    out = tmp_path_factory.mktemp("real")
    options = BatchOptions(exercise="squat", max_seconds=MAX_SECONDS, stride=STRIDE, workers=2)
    return out, run_batch(sources, out, options, model_path=None)


@pytest.mark.parametrize("clip", list(CLIPS))
def test_real_clip_outputs(real_run, clip):
    out, batch = real_run
    codec, fps, width, height = CLIPS[clip]
    name = Path(clip).stem
    result = {r.name: r for r in batch.results}[name]
    assert result.status == "done", result.message
    folder = out / name
    assert sorted(p.name for p in folder.iterdir()) == sorted(OUTPUT_FILES)
    assert check_complete(folder) is None
    expected = math.ceil(MAX_SECONDS * fps / STRIDE)

    with av.open(str(folder / "annotated.mp4")) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        decoded = [f.to_ndarray(format="bgr24") for f in c.decode(stream)]
        assert float(stream.average_rate) == pytest.approx(fps / STRIDE)
    assert len(decoded) == expected
    assert decoded[0].shape[:2] == (height + height % 2, width + width % 2)

    table = pd.read_csv(folder / "frames.csv")
    parquet = pd.read_parquet(folder / "frames.parquet")
    summary = json.loads((folder / "summary.json").read_text())
    assert len(table) == len(parquet) == summary["processing"]["frames"] == expected
    assert np.allclose(table["time_s"], np.arange(expected) * STRIDE / fps, atol=2e-3)
    joints = summary["model"]["joint_names"]
    for joint in joints:
        for suffix in ("_x_px", "_y_px", "_score", "_reliable"):
            assert f"{joint}{suffix}" in table.columns
    for angle in ("left_knee_flexion", "right_knee_flexion", "left_hip_flexion", "left_elbow_flexion",
                  "left_shoulder_abduction", "trunk_lean"):
        assert f"{angle}_deg" in table.columns
        assert angle in summary["angles"]

    source = summary["source"]
    assert (source["codec"], source["width"], source["height"], source["fps"]) == (codec, width, height, fps)
    processing = summary["processing"]
    assert processing["frames_with_pose"] == int(table["person_found"].sum())
    assert processing["pose_fraction"] >= MIN_POSE_FRACTION, processing
    found = table[table["person_found"]]
    # Keypoints lie in the frame.
    xs = found[[f"{j}_x_px" for j in joints]].to_numpy()
    ys = found[[f"{j}_y_px" for j in joints]].to_numpy()
    assert np.nanmin(xs) > -0.1 * width and np.nanmax(xs) < 1.1 * width
    assert np.nanmin(ys) > -0.1 * height and np.nanmax(ys) < 1.1 * height
    knee = summary["angles"]["left_knee_flexion"]
    assert knee["frames_measured"] > 0 and 0.0 <= knee["min_deg"] <= knee["max_deg"] <= 180.0
    assert summary["exercise"]["name"] == "squat" and summary["session"]["count"] == len(summary["repetitions"])
    for rep in summary["repetitions"]:
        assert {"span_deg", "duration_s", "symmetry_ratio", "start_s", "end_s"} <= set(rep)
    assert summary["model"]["sha256"] and summary["settings"]["anonymize"]["enabled"] is True

    html = (folder / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert html.count("<svg") >= 5 and "Frames with a pose" in html
    links = re.findall(r'(?:src|href|poster)="([^"]*)"', html)
    assert all(link.startswith(("data:", "#")) or link == "annotated.mp4" for link in links), links
    assert (folder / "report.pdf").read_bytes()[:5] == b"%PDF-"


def test_batch_speed_is_reported(real_run):
    _, batch = real_run
    assert batch.ok and batch.frames_processed > 0
    assert batch.videos_per_minute > 0 and batch.frames_per_second > 0

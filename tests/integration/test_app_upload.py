"""The Video analysis page through Streamlit's AppTest: real clips from ../shared, real outputs, real SQLite."""

from __future__ import annotations

import json
from pathlib import Path

import av
import pandas as pd
import pytest
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

from rehab.outputs import OUTPUT_FILES
from rehab.store import Store
from tests.e2e.browser_support import write_tiny_pose_model

MAIN = str(Path(__file__).resolve().parents[2] / "rehab" / "app" / "main.py")
TIMEOUT_S = 90
SHORT_CLIP = "videos/pose2sim_static_cam01.mp4"  # 11 frames, 1088x1920 H.264
LARGER_CLIP = "videos/pose2sim_balancing_cam03.mp4"  # 1.6 MiB


@pytest.fixture
def app_env(tmp_path, monkeypatch):
    monkeypatch.setenv("REHAB_APP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("REHAB_APP_MODEL", str(write_tiny_pose_model(tmp_path / "tiny.onnx")))
    monkeypatch.setenv("REHAB_APP_THREADS", "1")
    for name in ("REHAB_APP_PASSWORD", "REHAB_APP_CONFIG", "REHAB_APP_MAX_UPLOAD_MB"):
        monkeypatch.delenv(name, raising=False)
    previous = st_config.get_option("server.address")
    st_config.set_option("server.address", "127.0.0.1")
    yield tmp_path
    st_config.set_option("server.address", previous)


def _page() -> AppTest:
    # Straight to the page: the default (live) page's WebRTC component cannot run under AppTest.
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT_S)
    at.switch_page("views/video.py").run()
    assert not at.exception, at.exception
    return at


def _analyse(at: AppTest, files) -> AppTest:
    at.file_uploader[0].set_value(files)
    at.run()
    [analyse] = [b for b in at.button if b.label == "Analyse"]
    analyse.click().run()
    assert not at.exception, at.exception
    return at


def test_uploaded_clip_is_analysed_filed_and_offered_for_download(app_env, shared_dir, require_data):
    clip = require_data(shared_dir / SHORT_CLIP)
    at = _page()
    at.text_input(key="upload.patient.new").set_value("P-021")
    at.selectbox(key="upload.exercise").set_value("squat")
    _analyse(at, (clip.name, clip.read_bytes(), "video/mp4"))
    assert not at.error, [e.value for e in at.error]
    assert at.subheader[0].value == clip.name
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Frames"] == "11"
    assert len(at.get("video")) == 1
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Download annotated.mp4", "Download report.html", "Download report.pdf",
                      "Download frames.csv", "Download frames.parquet", "Download summary.json"]

    with Store(app_env / "data") as store:
        [session] = store.sessions("P-021")
    out = Path(session["output_dir"])
    assert session["exercise"] == "squat" and session["frames"] == 11
    assert session["source"] == f"upload: {clip.name}"
    # The outputs are real: an H.264 video of every frame, one table row per frame, a summary.
    with av.open(str(out / "annotated.mp4")) as video:
        stream = video.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert sum(1 for _ in video.decode(stream)) == 11
    assert len(pd.read_csv(out / "frames.csv")) == 11
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processing"]["frames"] == 11 and summary["settings"]["anonymize"]["enabled"] is True
    # The name the therapist uploaded, not the temporary file's, is what the summary records.
    assert summary["source"]["file_name"] == clip.name
    # Only the batch outputs are kept: the upload itself (faces unblurred) is nowhere in the data folder.
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)
    kept = [p for p in (app_env / "data").rglob("*") if p.is_file()]
    assert all(p.parent == out or p.name == "rehab.sqlite3" for p in kept), kept


def test_non_video_and_over_size_uploads_get_clear_messages(app_env, monkeypatch, shared_dir, require_data):
    big = require_data(shared_dir / LARGER_CLIP)
    monkeypatch.setenv("REHAB_APP_MAX_UPLOAD_MB", "1")
    at = _page()
    _analyse(at, [("notes.mp4", b"these are typed notes, not a video\n" * 200, "video/mp4"),
                  (big.name, big.read_bytes(), "video/mp4")])
    errors = [e.value for e in at.error]
    assert len(errors) == 2, errors
    assert "notes.mp4 could not be analysed" in errors[0] and "Is it a video file?" in errors[0]
    assert f"{big.name} is 1.6 MB, over the upload limit of 1 MB" in errors[1]
    # Nothing half-written is left behind, and the app still works.
    videos = app_env / "data" / "videos"
    assert not videos.exists() or not any(videos.iterdir())
    at.switch_page("views/history.py").run()
    assert not at.exception and at.title[0].value == "History"


def test_missing_model_disables_analysis_with_a_message(app_env, monkeypatch, shared_dir, require_data):
    clip = require_data(shared_dir / SHORT_CLIP)
    monkeypatch.setenv("REHAB_APP_MODEL", str(app_env / "no-such-model.onnx"))
    at = _page()
    at.file_uploader[0].set_value((clip.name, clip.read_bytes(), "video/mp4"))
    at.run()
    assert any("cannot be used" in e.value for e in at.error)
    [analyse] = [b for b in at.button if b.label == "Analyse"]
    assert analyse.disabled


def test_upload_keeps_its_name_as_data_in_the_summary(app_env, tmp_path):
    """The upload is processed from a temporary file named upload.mp4; summary.json records the name the
    therapist chose (cleaned of path and control characters), as data."""
    from tests.synthetic_clips import ClipSpec, write_clip

    clip = write_clip(tmp_path / "generated.mp4", ClipSpec(width=128, height=96, fps=10, seconds=0.6))
    at = _page()
    _analyse(at, ("Mrs B knee, week 3\t(left).mp4", clip.read_bytes(), "video/mp4"))
    assert not at.error, [e.value for e in at.error]
    [summary_path] = (app_env / "data" / "videos").rglob("summary.json")
    summary = json.loads(summary_path.read_text())
    assert summary["source"]["file_name"] == "Mrs B knee, week 3 (left).mp4"
    assert summary["processing"]["frames"] == 6

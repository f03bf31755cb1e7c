"""The live page in a real browser: Debian's Chromium with a fake camera fed from a real clip, over WebRTC.

Chromium skips loopback ICE candidates and aiortc never offers 127.0.0.1, so the browser and the server meet
on a veth pair inside a private network namespace (``unshare -n``, needs root as in CI). The namespace side
(server, browser, login through the server's own page, clicks) runs in tests.e2e.browser_support and reports
what the page showed as JSON; this test asserts on it, on the saved recording, its media link and file modes.
Screenshots go to out/e2e/ (or $REHAB_E2E_ARTIFACTS).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.e2e import browser_support as bs

CLIP = "videos/pose2sim_balancing_cam02.mp4"  # the subject faces the camera; 1.7 s, looped by Chromium
FACE_PHOTO = "images/astronaut.png"  # a clearly visible real face: proves the face detector works here
FACE_PHOTO_SIDE_PX = 160  # the astronaut's face is then about 30 px across, as a patient's is in this view
RECORD_S = 5.0
# Whole session (server start, browser, WebRTC, recording, playback) must fit in this; the test measures
# about 20 s on 2 busy cores.
SESSION_TIMEOUT_S = 100.0
REQUIRED = os.environ.get("REHAB_REQUIRE_DATA") == "1"


def _skip_or_fail(reason: str, required_because: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason}; REHAB_REQUIRE_DATA=1 makes this an error ({required_because})")
    pytest.skip(reason)


def _model() -> Path:
    override = os.environ.get("REHAB_E2E_MODEL")
    if override:
        return Path(override)
    from rehab.runtime.model import DEFAULT_MODEL_PATH

    if not DEFAULT_MODEL_PATH.is_file():
        _skip_or_fail(f"the embedded default model {DEFAULT_MODEL_PATH} is not built yet",
                      "the repository ships it; set REHAB_E2E_MODEL to test another model")
    return DEFAULT_MODEL_PATH


def _artifacts() -> Path:
    return Path(os.environ.get("REHAB_E2E_ARTIFACTS") or bs.REPO_ROOT / "out" / "e2e")


@pytest.mark.slow
def test_live_page_processes_the_camera_records_and_plays_back(tmp_path, shared_dir, require_data):
    clip = require_data(shared_dir / CLIP)
    face_photo = require_data(shared_dir / FACE_PHOTO)
    problem = bs.netns_problem()
    if problem:
        pytest.skip(problem)
    if bs.chromium_path() is None:
        _skip_or_fail("Debian chromium is not installed (apt-get install chromium chromium-driver)",
                      ".ci/run installs it")
    model = _model()
    camera = bs.make_camera_clip(clip, tmp_path / "camera.y4m")
    data_dir, result_path, shots = tmp_path / "data", tmp_path / "session.json", _artifacts()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(bs.REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    command = ["unshare", "-n", sys.executable, "-m", "tests.e2e.browser_support", "live-session",
               "--clip", str(camera), "--data-dir", str(data_dir), "--model", str(model), "--out", str(result_path),
               "--screenshots", str(shots), "--record-s", str(RECORD_S), "--timeout-s", str(SESSION_TIMEOUT_S)]
    run = subprocess.run(command, cwd=bs.REPO_ROOT, env=env, capture_output=True, text=True,
                         timeout=SESSION_TIMEOUT_S + 30)
    server_log = result_path.with_suffix(".server.log")
    context = (f"exit {run.returncode}\n--- stdout/stderr\n{run.stdout[-3000:]}{run.stderr[-3000:]}\n--- server log\n"
               + (server_log.read_text()[-3000:] if server_log.exists() else "(none)"))
    assert run.returncode == 0 and result_path.exists(), context
    seen = json.loads(result_path.read_text())
    print(json.dumps({k: v for k, v in seen.items() if k != "timeline"}, indent=1))

    # The server-side pipeline received camera frames and found poses, and the page showed the real rate.
    final = seen["final"]
    assert seen["first_frame_after_s"] is not None, context
    assert bs.number(final["Frames received"]) >= 60, final
    assert bs.number(final["Frames with a pose"]) >= 20, final
    assert bs.number(seen["during_recording"]["Processing FPS"]) > 1.0, seen["during_recording"]

    # A recording was saved: H.264 video, frames table, summary; it plays in Chromium.
    assert "Recording saved" in seen["saved_message"]
    [folder] = [Path(p) for p in seen["recordings"]]
    video, table, summary = folder / "annotated.mp4", folder / "frames.csv", folder / "summary.json"
    assert video.is_file() and table.is_file() and summary.is_file()
    shutil.copy(video, shots / "live_recording.mp4")  # for people to look at, next to the screenshots
    frames = bs.read_frames(video)
    rows = pd.read_csv(table)
    meta = json.loads(summary.read_text())
    assert meta["anonymized"] is True and meta["frames"] == len(rows) >= 10
    assert len(frames) == meta["video_frames"] >= RECORD_S * 0.6 * meta["video_fps"]
    assert rows["person_found"].sum() >= 0.5 * len(rows)
    played = seen["video_played"]
    assert played and played["error"] is None and played["currentTime"] > 0.5 and played["width"] == frames[0].shape[1]

    # No face is visible in it: every recorded frame went through the face blur, and an independent detector
    # finds no face in any of them, while it does find the real face in a photo, also scaled down to the
    # ~30 px a patient's face has in this view. (The clip's own subject was already pixelated by its authors,
    # so whether the pipeline hides a visible face is tested on real faces in test_pipeline_faces.py.)
    assert (rows["anonymization"] != "off").all()
    import cv2

    photo = cv2.imread(str(face_photo))
    small = cv2.resize(photo, (FACE_PHOTO_SIDE_PX, FACE_PHOTO_SIDE_PX), interpolation=cv2.INTER_AREA)
    assert bs.count_faces([photo, small]) == [1, 1]
    raw_faces, shown = bs.faces_shown_where_raw_had_one(frames, bs.camera_frames(clip))
    print(f"faces on the raw camera frames: {raw_faces}; shown again in the recording: {shown}")
    assert shown == 0, "a face the camera showed is visible in the recording"

    # The browser came in through the server's login page; the recording's media link answers only with
    # that login's cookie, and every file the server wrote is owner-only (the test runs with umask 022).
    assert "/login" not in seen["logged_in_at"]
    assert seen["media_with_cookie"] == 200 and seen["media_without_cookie"] == 401, seen
    download = seen["download_frames_csv"]
    assert download["status"] == 200 and 'filename="frames.csv"' in download["disposition"], download
    assert download["bytes"] > 0, download
    assert seen["mode_problems"] == [], seen["mode_problems"]
    from rehab.store import Store

    with Store(data_dir) as store:
        trail = {(e["user"], e["action"], e["pseudonym"]) for e in store.audit_log()}
    assert (bs.TEST_USER, "record", "P-E2E") in trail and (bs.TEST_USER, "login", None) in trail, trail

    # With no camera at all, the browser's error and the page's explanation show, and the app keeps running.
    no_camera = seen["no_camera"]
    assert "NotFoundError" in no_camera["browser"] and "no camera is connected" in no_camera["page"]
    assert no_camera["app_still_running"]

    for name in ("live_recording.png", "live_saved.png"):
        assert (shots / name).stat().st_size > 10_000
    shutil.copy(result_path, shots / "live_session.json")

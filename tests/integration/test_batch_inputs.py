"""Batch bookkeeping without a model: which files are videos, their output names, completeness, statistics.

Fast (no video is decoded); these are the rules that decide what a re-run skips and where outputs go.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rehab.analysis.summary import angle_statistics
from rehab.batch_inputs import discover_videos
from rehab.outputs import DONE_FILE, DONE_SCHEMA, check_complete, sha256_file
from rehab.report import angle_families, decimate
from rehab.video_job import BatchOptions, OutputFolderError, check_output_target, expected_frames


def touch(path, data: bytes = b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_folders_are_searched_for_videos_and_named_uniquely(tmp_path):
    root = tmp_path / "sessions"
    touch(root / "anna" / "squat.mp4")
    touch(root / "anna" / "squat.MOV")  # same stem, another container
    touch(root / "ben" / "walk.webm")
    touch(root / "notes.txt")
    touch(root / ".hidden.mp4")
    touch(root / ".cache" / "old.mp4")
    touch(root / "out" / "anna__squat_mp4" / "annotated.mp4")  # the output folder inside the input folder
    elsewhere = touch(tmp_path / "elsewhere" / "ben" / "walk.webm")
    renamed = touch(tmp_path / "export.dat")  # named explicitly: taken whatever its extension
    found = discover_videos([root, root / "ben" / "walk.webm", elsewhere, renamed, tmp_path / "gone.mp4"],
                            exclude=[root / "out"])
    names = {str(v.source.relative_to(tmp_path)): v.name for v in found}
    assert names == {
        "sessions/anna/squat.MOV": "anna__squat_mov",  # same stem in one folder: the extension tells them apart
        "sessions/anna/squat.mp4": "anna__squat_mp4",
        "sessions/ben/walk.webm": "ben__walk",  # listed once although also named on its own
        "elsewhere/ben/walk.webm": "walk",
        "export.dat": "export",
        "gone.mp4": "gone",  # missing: kept, so that it fails with "file not found"
    }
    assert [v.name for v in found][:3] == ["anna__squat_mov", "anna__squat_mp4", "ben__walk"]


def test_same_file_name_in_two_folders_gets_a_stable_hash_suffix(tmp_path):
    a = touch(tmp_path / "a" / "visit.mp4")
    b = touch(tmp_path / "b" / "visit.mp4")
    first = [v.name for v in discover_videos([a, b])]
    assert first[0] != first[1] and all(n.startswith("visit_") for n in first)
    assert first == [v.name for v in discover_videos([a, b])], "the same inputs map to the same folders every run"


def test_expected_frames():
    assert expected_frames(100, 60.0, BatchOptions()) == 100
    assert expected_frames(100, 60.0, BatchOptions(stride=3)) == 34
    assert expected_frames(100, 60.0, BatchOptions(max_seconds=1.0, stride=2)) == 30
    assert expected_frames(0, 30.0, BatchOptions(max_seconds=2.0)) == 60
    assert expected_frames(0, 30.0, BatchOptions()) == 0


def test_angle_statistics_ignore_unmeasured_frames():
    stats = angle_statistics(np.array([10.0, math.nan, 30.0, 20.0]))
    assert stats.frames_measured == 3 and stats.measured_fraction == 0.75
    assert (stats.min_deg, stats.median_deg, stats.max_deg, stats.mean_deg) == (10.0, 20.0, 30.0, 20.0)
    assert stats.range_deg == 20.0
    none = angle_statistics(np.array([math.nan, math.nan]))
    assert none.frames_measured == 0 and math.isnan(none.mean_deg)


def write_done(folder, fingerprint, files):
    record = {"schema": DONE_SCHEMA, "fingerprint": fingerprint,
              "files": {n: {"size_bytes": (folder / n).stat().st_size, "sha256": sha256_file(folder / n)} for n in files}}
    (folder / DONE_FILE).write_text(json.dumps(record))


def test_completeness_is_checked_against_checksums_and_options(tmp_path):
    folder = tmp_path / "visit"
    touch(folder / "frames.csv", b"a,b\n1,2\n")
    touch(folder / "summary.json", b"{}")
    assert check_complete(folder) == "no completion record"
    assert check_complete(tmp_path / "nothing") == "no output folder"
    fingerprint = {"source_sha256": "ab", "exercise": None, "stride": 1}
    write_done(folder, fingerprint, ["frames.csv", "summary.json"])
    assert check_complete(folder) is None
    assert check_complete(folder, fingerprint) is None
    assert "stride" in check_complete(folder, {**fingerprint, "stride": 2})
    (folder / "frames.csv").write_bytes(b"a,b\n1,3\n")  # same size, other content
    assert check_complete(folder) == "frames.csv fails its checksum"
    (folder / "summary.json").unlink()
    assert check_complete(folder) in ("summary.json is missing", "frames.csv fails its checksum")
    (folder / DONE_FILE).write_text("{not json")
    assert check_complete(folder).startswith("unreadable completion record")


def test_only_our_own_folders_are_replaced(tmp_path):
    check_output_target(tmp_path / "new")  # nothing there yet
    ours = tmp_path / "ours"
    touch(ours / "frames.csv")
    check_output_target(ours)
    touch(tmp_path / "theirs" / "consent_form.pdf")
    with pytest.raises(OutputFolderError, match="consent_form.pdf"):
        check_output_target(tmp_path / "theirs")
    touch(tmp_path / "afile")
    with pytest.raises(OutputFolderError, match="not a folder"):
        check_output_target(tmp_path / "afile")


def test_report_helpers():
    t = np.arange(10_000) / 30.0
    y = np.sin(t)
    y[5000] = 300.0  # a single-frame peak must survive the reduction
    tt, yy = decimate(t, y, max_points=500)
    assert len(tt) <= 500 and np.all(np.diff(tt) >= 0) and yy.max() == 300.0 and yy.min() == y.min()
    short_t, short_y = decimate(t[:100], y[:100])
    assert len(short_t) == 100
    families = angle_families(["left_knee_flexion", "right_knee_flexion", "left_shoulder_abduction",
                               "right_shoulder_abduction", "trunk_lean"], first=("left_shoulder_abduction",))
    assert families == [("shoulder_abduction", ["left_shoulder_abduction", "right_shoulder_abduction"]),
                        ("knee_flexion", ["left_knee_flexion", "right_knee_flexion"]), ("trunk_lean", ["trunk_lean"])]

"""Hard person-free crops mined from the runtime's own search-and-track loop (train.hard_negatives)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rehab.runtime.model import PoseModel  # noqa: E402
from rehab.settings import RuntimeSettings  # noqa: E402
from train import hard_negatives as hn  # noqa: E402
from train.config import Config, ConfigError, SourceConfig, resolve  # noqa: E402
from rehab.runtime.video import read_frames  # noqa: E402
from tests.presence_clips import find_clip  # noqa: E402

INPUT, HEATMAP = (64, 64), (16, 16)


def test_strips_lie_beside_the_grown_joint_box_and_small_ones_are_dropped():
    joints = np.array([[150.0, 60.0], [250.0, 240.0], [0.0, 0.0]])
    annotated = np.array([True, True, False])  # the unannotated (0, 0) joint must not widen the box
    strips = hn.person_strips((400, 300), joints, annotated)
    grow = 0.15 * 180
    assert strips == [(0, 0, int(150 - grow), 300), (int(np.ceil(250 + grow)), 0, 400, 300)]
    for x1, y1, x2, y2 in strips:  # none reaches into the grown box
        assert x2 <= 150 - grow or x1 >= 250 + grow
    assert hn.person_strips((400, 300), joints[:1], annotated[:1]) == []  # one joint: nowhere known to be free


@pytest.fixture(scope="module")
def model() -> PoseModel:
    return PoseModel.load(threads=2)


def test_the_replayed_loop_finds_nobody_in_black_and_tracks_a_real_person(model):
    settings = RuntimeSettings()
    black = hn.replay_loop(model, np.zeros((240, 320, 3), np.uint8), settings)
    assert len(black.boxes_xyxy) == 1 and black.boxes_xyxy[0] is None  # searched, nothing to track
    assert black.presences[0] < model.info.presence_threshold
    clip = find_clip("pose2sim_balancing_cam01.mp4")
    if clip is None:
        pytest.skip("sample_videos/ is not fetched (python -m rehab.samples)")
    frame, _ = next(iter(read_frames(clip, max_side_px=640)))  # 360x640, the patient standing in the middle
    found = hn.replay_loop(model, frame, settings)
    assert len(found.boxes_xyxy) == 1 + hn.TRACK_STEPS  # searched, then tracked from the joints
    assert all(p >= model.info.presence_threshold for p in found.presences)
    x1, y1, x2, y2 = found.boxes_xyxy[-1]
    assert -20 <= x1 < x2 <= 380 and y1 < 320 < y2 and y2 - y1 > 160  # on the standing patient, inside the frame


def _photo(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    path = tmp_path / "photo.jpg"
    cv2.imwrite(str(path), rng.integers(0, 255, (200, 300, 3), np.uint8))
    return path


def _mined_file(tmp_path: Path, strips: list[hn.MinedStrip]) -> Path:
    path = tmp_path / "mined.json"
    hn.save(path, strips, {"model": "m.onnx"})
    return path


def test_saved_files_round_trip_and_malformed_ones_are_refused_by_name(tmp_path: Path):
    strip = hn.MinedStrip("photo.jpg", (0, 0, 100, 200), [None, (10.0, 20.0, 60.0, 180.0)], [0.5, 0.9])
    path = _mined_file(tmp_path, [strip])
    about, strips = hn.load(path)
    assert about == {"model": "m.onnx"} and strips == [strip]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": hn.FORMAT, "strips": [{"image": "x.jpg"}]}))
    with pytest.raises(ValueError, match="strip 0 is malformed"):
        hn.load(bad)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read mined negatives"):
        hn.load(bad)
    bad.write_text(json.dumps({"strips": []}))
    with pytest.raises(ValueError, match="not a mined-negatives file"):
        hn.load(bad)


def test_the_oracle_clears_strips_and_must_match_them(tmp_path: Path):
    strips = [hn.MinedStrip("a.jpg", (0, 0, 10, 10), [None], [0.9]) for _ in range(3)]
    oracle = tmp_path / "oracle.json"
    # Two oracle runs: a strip is kept only when neither found a person in it.
    oracle.write_text(json.dumps({"runs": [{"landmarks_px": [None, [[1, 2, 0.9]], None]},
                                           {"landmarks_px": [None, None, [[3, 4, 0.8]]]}]}))
    kept, dropped = hn.keep_cleared(strips, oracle)
    assert kept == strips[:1] and dropped == 2
    oracle.write_text(json.dumps({"runs": [{"landmarks_px": [None]}]}))
    with pytest.raises(ValueError, match="1] results for 3 strips"):
        hn.keep_cleared(strips, oracle)


def test_mined_samples_are_person_free_crops_of_the_strip(tmp_path: Path):
    photo = _photo(tmp_path)
    strip = hn.MinedStrip(photo.name, (100, 0, 300, 200), [None, (20.0, 10.0, 120.0, 190.0)], [0.4, 0.95])
    data = hn.MinedDataset(_mined_file(tmp_path, [strip]), 14, INPUT, HEATMAP, count=8, image_root=tmp_path)
    assert len(data) == 8
    sample = data[0]
    assert tuple(sample["image"].shape) == (3, 64, 64) and sample["image"].dtype == torch.uint8
    assert float(sample["presence"]) == 0.0 and float(sample["presence_weight"]) == 1.0
    assert float(sample["target"].abs().sum()) == 0.0 and bool((sample["target_weight"] == 1).all())
    # Deterministic per (seed, epoch, index); another epoch draws another crop.
    assert torch.equal(data[3]["image"], data[3]["image"])
    data.set_epoch(1)
    assert any(not torch.equal(data[i]["image"], hn.MinedDataset(_mined_file(tmp_path, [strip]), 14, INPUT, HEATMAP,
                                                                   count=8, image_root=tmp_path)[i]["image"])
               for i in range(8))
    with pytest.raises(FileNotFoundError, match="mined strip image not found"):
        hn.MinedDataset(_mined_file(tmp_path, [strip]), 14, INPUT, HEATMAP, image_root=tmp_path / "nowhere")[0]


def test_a_mined_source_must_be_background():
    cfg = Config()
    cfg.data.train = [SourceConfig(kind="mined", path="train/configs/x.json", sample="person")]
    with pytest.raises(ConfigError, match="mined images hold no person"):
        resolve(cfg)


def test_the_committed_mined_files_load_and_name_the_oracles_that_cleared_them():
    repo = Path(__file__).resolve().parents[2]
    for name, kept in (("hard_negatives_lspet.json", 1927), ("hard_negatives_lspet_val.json", 115)):
        about, strips = hn.load(repo / "train" / "configs" / name)
        assert len(strips) == kept and about["oracle_found_person"] > 0 and about["face_found"] > 0
        assert all(s.image.startswith("data/lspet/images/") and len(s.boxes_xyxy) > 1 for s in strips)
    # the training strips come from LSPET's first 9,500 photos, the validation strips from its last 500
    assert about["start"] == -500

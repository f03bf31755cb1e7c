"""Readers on the real annotation files and fixture images; damaged files are named with the problem."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from rehab.core.skeleton import LSP14, MPII16
from train.dataset import CropSettings, PoseDataset
from rehab.pose_annotations import read_coco, read_lsp, read_lspet, read_mpii, read_mpii_json

SETTINGS = CropSettings((128, 128), (32, 32), 2.0, box_margin=0.15, box_padding=1.25)


def test_lsp_has_2000_entries_split_1000_1000(shared_dir, require_data):
    root = require_data(shared_dir / "data/lsp")
    train, test, everything = read_lsp(root, "train"), read_lsp(root, "test"), read_lsp(root, "all")
    assert (len(train), len(test), len(everything)) == (1000, 1000, 2000)
    assert train[0].image_path.name == "im0001.jpg" and test[0].image_path.name == "im1001.jpg"
    assert all(r.annotated.all() for r in everything)  # occluded LSP joints keep a position
    occluded = np.mean([~r.visible for r in everything])
    assert 0.0 < occluded < 0.5  # flag 1 = occluded is a minority


def test_lspet_has_10000_entries_with_12_percent_unannotated(shared_dir, require_data):
    records = read_lspet(require_data(shared_dir / "data/lspet"))
    assert len(records) == 10000
    missing = np.mean([~r.annotated for r in records])
    assert missing == pytest.approx(0.12, abs=0.01)
    assert all(np.isnan(r.joints_px[~r.annotated]).all() for r in records[:500])


def test_mpii_split_counts_and_one_based_conversion(shared_dir, require_data):
    path = require_data(shared_dir / "data/mpii/mpii_annotations.json.gz")
    train, valid = read_mpii(path, "train"), read_mpii(path, "valid")
    assert (len(train), len(valid)) == (22246, 2958)
    assert all(r.joint_set is MPII16 for r in train[:10])
    # The first entry's right ankle is (620, 394) in MATLAB pixels: 0-based it is (619, 393).
    assert train[0].joints_px[0] == pytest.approx([619.0, 393.0])
    # About 6.5% of joints are not annotated (the PCKh ground truth's jnt_missing share).
    assert np.mean([~r.annotated for r in valid]) == pytest.approx(0.065, abs=0.01)


def test_mpii_valid_head_boxes_come_from_the_pckh_file(shared_dir, require_data):
    path = require_data(shared_dir / "data/mpii/mpii_annotations.json.gz")
    mat = require_data(shared_dir / "data/mpii/detections_our_format.mat")
    valid = read_mpii(path, "valid", head_boxes_file=mat)
    boxes = np.stack([r.head_box_xyxy for r in valid])
    assert np.isfinite(boxes).all()
    # The head box surrounds the annotated neck/head_top in nearly every entry.
    head = np.stack([r.joints_px[MPII16.index("head_top")] for r in valid])
    x1, y1, x2, y2 = (np.minimum(boxes[:, 0], boxes[:, 2]), np.minimum(boxes[:, 1], boxes[:, 3]),
                      np.maximum(boxes[:, 0], boxes[:, 2]), np.maximum(boxes[:, 1], boxes[:, 3]))
    margin = 0.25 * (x2 - x1)
    ok = np.isfinite(head).all(1)
    inside = (head[:, 0] >= x1 - margin) & (head[:, 0] <= x2 + margin) & (head[:, 1] >= y1 - margin) & (head[:, 1] <= y2 + margin)
    assert inside[ok].mean() > 0.95


def test_mpii_fixture_json_agrees_with_json_gz_and_images_crop(shared_dir, require_data):
    fixture = require_data(shared_dir / "data/fixtures/mpii/test_mpii.json")
    records = read_mpii_json(fixture)
    assert len(records) == 5
    gz = {(r.image_path.name, round(float(r.center_px[0]))): r
          for r in read_mpii(require_data(shared_dir / "data/mpii/mpii_annotations.json.gz"), "valid")}
    for r in records:
        twin = gz[(r.image_path.name, round(float(r.center_px[0])))]
        assert r.scale_h == pytest.approx(twin.scale_h, abs=1e-3)
        both = r.annotated & twin.annotated
        assert np.abs(r.joints_px[both] - twin.joints_px[both]).max() <= 1.0
    ds = PoseDataset(records, MPII16, SETTINGS)
    for i in range(len(ds)):
        s = ds[i]
        assert s["image"].shape == (3, 128, 128) and s["image"].float().std() > 10
        kp = s["meta"]["joints_crop_px"][s["target_weight"].numpy() > 0]
        assert ((kp > -1) & (kp < 129)).all()  # the person fits the crop
        assert s["target_weight"].sum() >= 12


def test_coco_fixture_images_load_and_crop(shared_dir, require_data):
    records = read_coco(require_data(shared_dir / "data/fixtures/coco/test_coco.json"))
    assert len(records) >= 4
    ds = PoseDataset(records, LSP14, SETTINGS)
    for i in range(len(ds)):
        s = ds[i]
        assert s["image"].shape == (3, 128, 128)
        w = s["target_weight"].numpy()
        assert w[LSP14.index("neck")] == 0 and w[LSP14.index("head_top")] == 0  # COCO has neither
        kp = s["meta"]["joints_crop_px"][w > 0]
        assert ((kp > -1) & (kp < 129)).all()


def test_damaged_annotation_files_name_the_file_and_problem(tmp_path):
    bad_mat = tmp_path / "joints.mat"
    bad_mat.write_bytes(b"MATLAB 5.0 MAT-file, garbage garbage garbage" * 4)
    with pytest.raises(ValueError, match=r"joints\.mat"):
        read_lsp(tmp_path)
    import scipy.io

    scipy.io.savemat(bad_mat, {"joints": np.zeros((14, 3, 4))})
    with pytest.raises(ValueError, match=r"joints\.mat.*\(3, 14, N\).*LSPET"):
        read_lsp(tmp_path)
    bad_gz = tmp_path / "ann.json.gz"
    bad_gz.write_bytes(gzip.compress(b"[{\"isValidation\": 0,"))
    with pytest.raises(ValueError, match=r"ann\.json\.gz.*JSONDecodeError"):
        read_mpii(bad_gz)
    bad_json = tmp_path / "coco.json"
    bad_json.write_text("{\"images\": []}")
    with pytest.raises(ValueError, match=r"coco\.json.*annotations"):
        read_coco(bad_json)
    with pytest.raises(FileNotFoundError, match="absent"):
        read_lspet(tmp_path / "absent")

"""The sample transform on a synthetic image: hand-computed crop coordinates, joints land on the drawn
person, flips swap left and right, bad files are named, and the mixed dataset counts."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from rehab.core.heatmaps import decode
from rehab.core.skeleton import LSP14, MPII16
from train.augment import AugmentDraw
from train.dataset import CropSettings, MixedDataset, PoseDataset
from rehab.pose_annotations import PoseRecord

IMG_W, IMG_H = 120, 200
SETTINGS = CropSettings(input_size=(64, 64), heatmap_size=(16, 16), sigma=1.0, box_margin=0.15, box_padding=1.0)


def _joints() -> np.ndarray:
    rng = np.random.default_rng(3)
    return np.column_stack([rng.uniform(30, 90, 14), rng.uniform(40, 170, 14)])


def _record(tmp_path, joints, name="person.png", **kw) -> PoseRecord:
    """A black image with a white disc on every joint."""
    image = np.zeros((IMG_H, IMG_W, 3), np.uint8)
    for x, y in joints:
        cv2.circle(image, (int(round(x)), int(round(y))), 3, (255, 255, 255), -1)
    path = tmp_path / name
    cv2.imwrite(str(path), image)
    ones = np.ones(14, bool)
    return PoseRecord(path, joints, ones, ones, LSP14, f"synthetic {name}", **kw)


def test_crop_coordinates_match_a_hand_computed_case(tmp_path):
    joints = _joints()
    joints[0] = (80.0, 150.0)  # right ankle
    rec = _record(tmp_path, joints, center_px=np.array([60.0, 100.0]), scale_h=1.0)
    ds = PoseDataset([rec], LSP14, SETTINGS)
    # Box 200 x 200 px (scale 1.0, padding 1) into 64 px: factor 0.32. Rotating by +90 deg maps
    # (x, y) -> (0.32 (y - 100) + 32, -0.32 (x - 60) + 32): the ankle goes to (48, 25.6).
    s = ds.sample(0, AugmentDraw(rotation_deg=90.0, scale_mult=1.0, flip=False))
    assert s["meta"]["joints_crop_px"][0] == pytest.approx([48.0, 25.6])
    # Flipping mirrors x -> 63 - x and renames: the right ankle becomes the left ankle (index 5).
    s = ds.sample(0, AugmentDraw(rotation_deg=90.0, scale_mult=1.0, flip=True))
    assert s["meta"]["joints_crop_px"][LSP14.index("left_ankle")] == pytest.approx([15.0, 25.6])
    # The target heatmap of the renamed joint peaks there (stride 4, quarter-pixel decoding).
    kp, _ = decode(s["target"].numpy(), stride=SETTINGS.stride)
    assert np.abs(kp[LSP14.index("left_ankle")] - [15.0, 25.6]).max() <= 2.0
    # Scale 1.25 shows a box 1.25x as large: offsets from the crop centre shrink by 1.25.
    s = ds.sample(0, AugmentDraw(rotation_deg=0.0, scale_mult=1.25, flip=False))
    assert s["meta"]["joints_crop_px"][0] == pytest.approx([32 + 0.32 / 1.25 * 20, 32 + 0.32 / 1.25 * 50])


@pytest.mark.parametrize("aug", [AugmentDraw(0.0, 1.0, False), AugmentDraw(25.0, 0.9, True),
                                 AugmentDraw(-40.0, 1.2, True)])
def test_joints_land_on_the_drawn_person(tmp_path, aug):
    joints = _joints()
    ds = PoseDataset([_record(tmp_path, joints)], LSP14,
                     CropSettings((64, 64), (16, 16), 1.0, box_margin=0.15, box_padding=1.25))
    s = ds.sample(0, aug)
    image = s["image"].numpy()  # (3, h, w) uint8
    kp = s["meta"]["joints_crop_px"]
    inside = (kp >= 0).all(1) & (kp < 63.5).all(1)
    assert inside.all()
    values = [image[0, int(round(y)), int(round(x))] for x, y in kp]
    assert min(values) > 100, values
    assert (s["target_weight"].numpy() == 1).all()


def test_missing_image_names_file_and_entry(tmp_path):
    rec = PoseRecord(tmp_path / "nope.jpg", _joints(), np.ones(14, bool), np.ones(14, bool), LSP14, "lsp im0042")
    ds = PoseDataset([rec], LSP14, SETTINGS)
    with pytest.raises(FileNotFoundError, match=r"nope\.jpg.*lsp im0042"):
        ds[0]


def test_damaged_image_names_file_and_entry(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"not a jpeg at all")
    rec = PoseRecord(path, _joints(), np.ones(14, bool), np.ones(14, bool), LSP14, "lspet im00007")
    with pytest.raises(ValueError, match=r"broken\.jpg.*lspet im00007"):
        PoseDataset([rec], LSP14, SETTINGS)[0]


def test_mapping_into_another_joint_set_zeroes_missing_joints(tmp_path):
    ds = PoseDataset([_record(tmp_path, _joints())], MPII16, SETTINGS)
    w = ds[0]["target_weight"].numpy()
    assert w.shape == (16,)
    assert w[MPII16.index("pelvis")] == 0 and w[MPII16.index("thorax")] == 0
    assert w[MPII16.index("left_knee")] == 1


def test_augmentation_is_a_function_of_seed_epoch_index(tmp_path):
    from train.config import AugmentConfig, resolve_augment

    ds = PoseDataset([_record(tmp_path, _joints())], LSP14, SETTINGS, augment=resolve_augment(AugmentConfig()),
                     seed=5)
    a, b = ds[0], ds[0]
    assert np.array_equal(a["image"].numpy(), b["image"].numpy())
    ds.set_epoch(1)
    assert not np.array_equal(a["meta"]["joints_crop_px"], ds[0]["meta"]["joints_crop_px"])


def test_mixed_dataset_counts_and_ratios(tmp_path):
    rec = _record(tmp_path, _joints())
    big = PoseDataset([rec] * 50, LSP14, SETTINGS, name="big")
    small = PoseDataset([rec] * 5, LSP14, SETTINGS, name="small")
    mixed = MixedDataset([big, small], counts=[12, 7], seed=0)
    assert len(mixed) == 19
    sources = mixed._index[:, 0]
    assert (sources == 0).sum() == 12 and (sources == 1).sum() == 7  # 7 > 5: drawn with repeats
    ratio = MixedDataset([big, small], ratios=[0.75, 0.25], epoch_size=40, seed=0)
    assert len(ratio) == 40 and (ratio._index[:, 0] == 1).sum() == 10
    first = ratio._index.copy()
    ratio.set_epoch(1)
    assert not np.array_equal(first, ratio._index)
    assert ratio[0]["meta"]["source"] in (0, 1)


@pytest.mark.parametrize("encoding", ["standard", "udp"])
def test_targets_decode_back_to_the_crop_joints_with_the_configured_codec(tmp_path, encoding):
    """The dataset encodes with the config's heatmap encoding; decoding with the same one (DARK) returns the
    joints in the crop within a small fraction of a heatmap pixel."""
    import dataclasses

    settings = dataclasses.replace(SETTINGS, heatmap_encoding=encoding)
    ds = PoseDataset([_record(tmp_path, _joints(), center_px=np.array([60.0, 100.0]), scale_h=1.0)], LSP14, settings)
    s = ds.sample(0, AugmentDraw(rotation_deg=10.0, scale_mult=1.0, flip=True))
    kp, _ = decode(s["target"].numpy(), settings.coordinate_stride, "dark", settings.sigma)
    crop = s["meta"]["joints_crop_px"]
    inside = (crop > 8).all(1) & (crop < 56).all(1)
    assert inside.sum() >= 8
    assert np.abs(kp[inside] - crop[inside]).max() < 0.1 * settings.stride

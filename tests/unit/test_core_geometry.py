"""Skeleton tables, the heatmap codec, the affine maths and joint angles."""

from __future__ import annotations

import numpy as np
import pytest

from rehab.core import angles, heatmaps, skeleton, transforms
from rehab.core.skeleton import LSP14, MPII16


def test_joint_sets_have_expected_names_and_mirror_pairs():
    assert MPII16.num_joints == 16 and LSP14.num_joints == 14
    assert MPII16.joints[0] == "right_ankle" and MPII16.joints[8] == "neck" and LSP14.joints[12] == "neck"
    for s in (MPII16, LSP14):
        for a, b in s.flip_pairs:
            assert s.joints[a].replace("left_", "") == s.joints[b].replace("right_", "")
        perm = s.flip_permutation
        np.testing.assert_array_equal(perm[perm], np.arange(s.num_joints))
    assert len(LSP14.flip_pairs) == 6 and len(MPII16.flip_pairs) == 6


def test_mapping_between_sets_keeps_shared_joints_and_marks_the_rest_missing():
    rng = np.random.default_rng(0)
    kp = rng.uniform(0, 100, (3, 14, 2))
    vis = np.ones((3, 14))
    out, out_vis = skeleton.convert(kp, vis, LSP14, MPII16)
    assert out.shape == (3, 16, 2)
    np.testing.assert_array_equal(out[:, MPII16.index("left_wrist")], kp[:, LSP14.index("left_wrist")])
    np.testing.assert_array_equal(out[:, MPII16.index("neck")], kp[:, LSP14.index("neck")])
    assert np.isnan(out[:, MPII16.index("pelvis")]).all() and (out_vis[:, MPII16.index("thorax")] == 0).all()
    back, back_vis = skeleton.convert(out, out_vis, MPII16, LSP14)
    np.testing.assert_array_equal(back, kp)
    with pytest.raises(ValueError, match="keypoints must have shape"):
        skeleton.convert(kp[:, :10], vis[:, :10], LSP14, MPII16)


def test_unknown_joint_name_is_a_clear_error():
    with pytest.raises(KeyError, match="not in joint set"):
        LSP14.index("pelvis")


@pytest.mark.parametrize("seed", range(5))
def test_encode_decode_round_trip_within_half_a_heatmap_pixel(seed):
    rng = np.random.default_rng(seed)
    stride, size = 4.0, (48, 64)
    kp_hm = np.column_stack([rng.uniform(2, size[0] - 3, 20), rng.uniform(2, size[1] - 3, 20)])
    targets, weights = heatmaps.encode(kp_hm * stride, np.ones(20), size, stride)
    assert targets.shape == (20, 64, 48) and targets.dtype == np.float32
    assert (weights == 1).all()
    decoded, scores = heatmaps.decode(targets, stride=stride)
    err_hm = np.linalg.norm(decoded / stride - kp_hm, axis=1)
    assert err_hm.max() <= 0.5, err_hm.max()
    assert (scores > 0.7).all()


def test_decode_batched_matches_single_and_shifts_toward_higher_neighbour():
    hm = np.zeros((2, 1, 8, 8), np.float32)
    hm[0, 0, 4, 4] = 1.0
    hm[0, 0, 4, 5] = 0.5
    hm[1, 0, 2, 3] = 0.8
    hm[1, 0, 1, 3] = 0.3
    kp, sc = heatmaps.decode(hm)
    np.testing.assert_allclose(kp[0, 0], [4.25, 4.0])
    np.testing.assert_allclose(kp[1, 0], [3.0, 1.75])
    np.testing.assert_allclose(sc[:, 0], [1.0, 0.8])
    single, _ = heatmaps.decode(hm[1])
    np.testing.assert_allclose(single, kp[1])


def test_encode_gives_zero_weight_to_invisible_and_far_outside_joints():
    kp = np.array([[10.0, 10.0], [10.0, 10.0], [-100.0, 5.0], [np.nan, np.nan]])
    targets, weights = heatmaps.encode(kp, np.array([1, 0, 1, 1]), (16, 16), 1.0)
    np.testing.assert_array_equal(weights, [1, 0, 0, 0])
    assert targets[1:].max() == 0 and targets[0].max() == pytest.approx(1.0)


def test_codec_rejects_malformed_arrays_naming_the_argument():
    with pytest.raises(ValueError, match="keypoints_px must have shape"):
        heatmaps.encode(np.zeros((3, 3)), np.ones(3), (8, 8), 1.0)
    with pytest.raises(ValueError, match="visible must have shape"):
        heatmaps.encode(np.zeros((3, 2)), np.ones(4), (8, 8), 1.0)
    with pytest.raises(ValueError, match=r"heatmaps must have shape \(N, K, H, W\)"):
        heatmaps.decode(np.zeros((8, 8)))
    with pytest.raises(ValueError, match="heatmaps contains NaN"):
        heatmaps.decode(np.full((1, 2, 4, 4), np.nan, np.float32))


def test_flip_heatmaps_twice_is_identity_and_merge_of_symmetric_input_keeps_peaks():
    rng = np.random.default_rng(1)
    hm = rng.random((2, 14, 16, 12)).astype(np.float32)
    perm = LSP14.flip_permutation
    np.testing.assert_array_equal(heatmaps.flip_heatmaps(heatmaps.flip_heatmaps(hm, perm), perm), hm)
    # A network that is exactly mirror-equivariant gives flipped heatmaps for a flipped image; merging
    # without the shift must then reproduce the original maps.
    mirrored = heatmaps.flip_heatmaps(hm, perm)
    np.testing.assert_allclose(heatmaps.merge_flip(hm, mirrored, perm, shift=False), hm)
    shifted = heatmaps.merge_flip(hm, mirrored, perm, shift=True)
    np.testing.assert_allclose(shifted[..., 1:], (hm[..., 1:] + hm[..., :-1]) / 2)


def test_flip_points_twice_is_identity():
    rng = np.random.default_rng(2)
    kp = rng.uniform(0, 200, (4, 14, 2))
    perm = LSP14.flip_permutation
    once = transforms.flip_points(kp, 200, perm)
    np.testing.assert_allclose(once[:, LSP14.index("left_wrist"), 0], 199 - kp[:, LSP14.index("right_wrist"), 0])
    np.testing.assert_allclose(transforms.flip_points(once, 200, perm), kp)


@pytest.mark.parametrize("rot", [0.0, 15.0, -30.0, 90.0])
def test_crop_then_uncrop_is_identity(rot):
    rng = np.random.default_rng(3)
    pts = rng.uniform(0, 640, (10, 14, 2))
    center, scale = np.array([320.0, 240.0]), np.array([1.5, 2.0])
    cropped = transforms.crop_points(pts, center, scale, rot, (192, 256))
    np.testing.assert_allclose(transforms.uncrop_points(cropped, center, scale, rot, (192, 256)), pts, atol=1e-9)


def test_affine_maps_box_center_to_crop_center_and_box_width_to_crop_width():
    center, scale = np.array([100.0, 50.0]), np.array([1.0, 1.0])
    m = transforms.affine_matrix(center, scale, 0.0, (64, 64))
    np.testing.assert_allclose(transforms.apply_affine(center, m), [32, 32])
    np.testing.assert_allclose(transforms.apply_affine(np.array([200.0, 50.0]), m), [64, 32])
    # Positive rotation turns content counter-clockwise: a point right of centre moves up (y decreases).
    r = transforms.affine_matrix(center, scale, 90.0, (64, 64))
    np.testing.assert_allclose(transforms.apply_affine(np.array([200.0, 50.0]), r), [32, 0], atol=1e-9)


def test_box_to_center_scale_keeps_aspect_ratio_and_pads():
    center, scale = transforms.box_to_center_scale((0, 0, 100, 400), aspect_ratio=0.75, padding=1.25)
    np.testing.assert_allclose(center, [50, 200])
    np.testing.assert_allclose(scale * transforms.SCALE_UNIT_PX, [300 * 1.25, 400 * 1.25])
    with pytest.raises(ValueError, match="box_xyxy"):
        transforms.box_to_center_scale((10, 10, 5, 20), 1.0)


def test_right_angle_is_90_degrees_and_straight_limb_has_zero_flexion():
    assert angles.angle_deg([1, 0], [0, 0], [0, 1]) == pytest.approx(90.0)
    assert angles.angle_deg([1, 0], [0, 0], [-1, 0]) == pytest.approx(180.0)
    names = LSP14.joints
    kp = np.zeros((14, 2))
    kp[LSP14.index("left_hip")] = [100, 100]
    kp[LSP14.index("left_knee")] = [100, 200]
    kp[LSP14.index("left_ankle")] = [100, 300]
    assert angles.compute_angle(angles.get_angle("left_knee_flexion"), kp, names) == pytest.approx(0.0)
    kp[LSP14.index("left_ankle")] = [0, 200]
    assert angles.compute_angle(angles.get_angle("left_knee_flexion"), kp, names) == pytest.approx(90.0)


def test_shoulder_abduction_and_trunk_lean_from_hand_built_pose():
    names = LSP14.joints
    kp = np.zeros((14, 2))
    for joint, xy in {"left_shoulder": (200, 100), "right_shoulder": (100, 100), "left_hip": (190, 300),
                      "right_hip": (110, 300), "left_elbow": (300, 100), "right_elbow": (100, 200)}.items():
        kp[LSP14.index(joint)] = xy
    got = angles.joint_angles(kp, names, names=["left_shoulder_abduction", "right_shoulder_abduction", "trunk_lean"])
    assert got["left_shoulder_abduction"] == pytest.approx(90 + np.degrees(np.arctan(10 / 200)))
    assert got["right_shoulder_abduction"] == pytest.approx(np.degrees(np.arctan(10 / 200)))
    assert got["trunk_lean"] == pytest.approx(0.0)


def test_angles_are_nan_when_a_joint_is_missing_or_unreliable():
    names = MPII16.joints
    kp = np.random.default_rng(4).uniform(0, 100, (5, 16, 2))
    scores = np.ones((5, 16))
    scores[2, MPII16.index("right_knee")] = 0.1
    kp[3, MPII16.index("right_ankle")] = np.nan
    out = angles.joint_angles(kp, names, scores, min_score=0.3)
    knee = out["right_knee_flexion"]
    assert np.isnan(knee[2]) and np.isnan(knee[3]) and np.isfinite(knee[[0, 1, 4]]).all()
    only_lsp = angles.compute_angle(angles.get_angle("left_knee_flexion"), kp[:, :6], names[:6])
    assert np.isfinite(only_lsp).all()
    with pytest.raises(KeyError, match="unknown angle"):
        angles.get_angle("left_pinky")

"""The heatmap codec's encodings (standard, UDP) and decodings (quarter, DARK): round trips and flips."""

import numpy as np
import pytest

from rehab.core import heatmaps
from rehab.core.heatmaps import coordinate_stride, decode_to_image, encode
from rehab.core.skeleton import get_joint_set

INPUT, HEATMAP, SIGMA = (192, 256), (48, 64), 2.0


def _points(seed: int, n: int = 50) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Away from the border by 3 sigma of heatmap pixels, where neither decoder is clipped.
    return np.column_stack([rng.uniform(24, INPUT[0] - 25, n), rng.uniform(24, INPUT[1] - 25, n)])


def test_udp_stride_is_measured_in_unit_lengths_per_axis():
    np.testing.assert_allclose(heatmaps.coordinate_stride(INPUT, HEATMAP, "standard"), [4.0, 4.0])
    np.testing.assert_allclose(heatmaps.coordinate_stride(INPUT, HEATMAP, "udp"), [191 / 47, 255 / 63])
    assert heatmaps.flip_shift("standard") and not heatmaps.flip_shift("udp")


@pytest.mark.parametrize("encoding", heatmaps.ENCODINGS)
@pytest.mark.parametrize("seed", range(3))
def test_dark_round_trip_is_far_tighter_than_the_quarter_offset(encoding, seed):
    kp = _points(seed)
    stride = heatmaps.coordinate_stride(INPUT, HEATMAP, encoding)
    targets, weights = heatmaps.encode(kp, np.ones(len(kp)), HEATMAP, stride, SIGMA)
    assert (weights == 1).all()
    quarter, _ = heatmaps.decode(targets, stride, "quarter", SIGMA)
    dark, scores = heatmaps.decode(targets, stride, "dark", SIGMA)
    err_q = np.linalg.norm((quarter - kp) / stride, axis=1)
    err_d = np.linalg.norm((dark - kp) / stride, axis=1)
    assert err_q.max() <= 0.5
    # A Gaussian's log is a parabola: the Taylor step lands within a few hundredths of a heatmap pixel.
    assert err_d.max() < 0.05, err_d.max()
    assert err_d.mean() < err_q.mean() / 5
    assert (scores > 0.7).all()


def test_dark_stays_within_a_pixel_on_noisy_heatmaps_and_scores_are_the_raw_maxima():
    kp = _points(7)
    stride = heatmaps.coordinate_stride(INPUT, HEATMAP, "udp")
    targets, _ = heatmaps.encode(kp, np.ones(len(kp)), HEATMAP, stride, SIGMA)
    noisy = targets + np.random.default_rng(0).normal(0, 0.02, targets.shape).astype(np.float32)
    dark, scores = heatmaps.decode(noisy, stride, "dark", SIGMA)
    quarter, _ = heatmaps.decode(noisy, stride, "quarter", SIGMA)
    err_d = np.linalg.norm((dark - kp) / stride, axis=1)
    err_q = np.linalg.norm((quarter - kp) / stride, axis=1)
    assert err_d.max() < 0.6 and err_d.mean() < err_q.mean()
    np.testing.assert_allclose(scores, noisy.reshape(len(kp), -1).max(1), rtol=1e-6)


def test_dark_keeps_the_argmax_at_the_border_and_on_flat_maps():
    hm = np.zeros((1, 2, 8, 8), np.float32)
    hm[0, 0, 0, 3] = 1.0  # peak on the top row: no central differences
    kp, scores = heatmaps.decode(hm, 1.0, "dark", SIGMA)
    np.testing.assert_allclose(kp[0, 0], [3.0, 0.0])
    assert np.isfinite(kp).all() and scores[0, 1] == 0.0


def test_udp_flip_maps_heatmap_coordinates_exactly_and_standard_does_not():
    """An image mirrored (x -> W - 1 - x) gives targets whose mirror is the unflipped target under UDP; the
    standard convention is off by 1 - 1/stride heatmap pixels (what the flip test's one-pixel shift is for)."""
    joint_set = get_joint_set("lsp14")
    perm = joint_set.flip_permutation
    rng = np.random.default_rng(3)
    kp = np.column_stack([rng.uniform(30, 160, 14), rng.uniform(30, 220, 14)])
    mirrored_kp = kp.copy()
    mirrored_kp[:, 0] = INPUT[0] - 1 - kp[:, 0]
    mirrored_kp = mirrored_kp[perm]
    for encoding, expected_dx in (("udp", 0.0), ("standard", -(1 - 1 / 4.0))):
        stride = heatmaps.coordinate_stride(INPUT, HEATMAP, encoding)
        t, _ = heatmaps.encode(kp, np.ones(14), HEATMAP, stride, SIGMA)
        t_m, _ = heatmaps.encode(mirrored_kp, np.ones(14), HEATMAP, stride, SIGMA)
        back = heatmaps.flip_heatmaps(t_m, perm)
        got, _ = heatmaps.decode(back, 1.0, "dark", SIGMA)
        ref, _ = heatmaps.decode(t, 1.0, "dark", SIGMA)
        np.testing.assert_allclose(got[:, 0] - ref[:, 0], expected_dx, atol=0.02)
        np.testing.assert_allclose(got[:, 1], ref[:, 1], atol=0.02)


def test_codec_rejects_unknown_modes_and_bad_strides():
    with pytest.raises(ValueError, match="heatmap decoding must be one of quarter, dark"):
        heatmaps.decode(np.zeros((1, 1, 4, 4), np.float32), 1.0, "soft_argmax")
    with pytest.raises(ValueError, match="heatmap encoding must be one of standard, udp"):
        heatmaps.coordinate_stride(INPUT, HEATMAP, "unbiased")
    with pytest.raises(ValueError, match="stride must be positive"):
        heatmaps.encode(np.zeros((1, 2)), np.ones(1), (8, 8), 0.0)
    with pytest.raises(ValueError, match="at least 2x2"):
        heatmaps.coordinate_stride((4, 4), (1, 1), "udp")


def test_decode_to_image_maps_crops_back_one_by_one_or_as_a_batch():
    """Keypoints encoded in two crops come back at their image positions through each crop's affine."""
    rng = np.random.default_rng(7)
    input_size, heatmap_size = (64, 64), (16, 16)
    image_px = rng.uniform(50, 120, (2, 5, 2))  # inside both crops
    affines = np.array([[[0.5, 0.0, -10.0], [0.0, 0.5, -5.0]], [[0.4, 0.0, -8.0], [0.0, 0.4, -12.0]]])
    heatmaps = np.stack([encode(image_px[i] @ affines[i][:, :2].T + affines[i][:, 2], np.ones(5), heatmap_size,
                                coordinate_stride(input_size, heatmap_size))[0] for i in range(2)])
    batch_px, batch_scores = decode_to_image(heatmaps, affines, input_size, heatmap_size)
    one_px, one_scores = decode_to_image(heatmaps[1], affines[1], input_size, heatmap_size)
    assert batch_px.shape == (2, 5, 2) and np.array_equal(batch_px[1], one_px)
    assert np.array_equal(batch_scores[1], one_scores)
    # A quarter-pixel decoder on a stride-4 heatmap: within 2 heatmap pixels' worth in the crop, scaled back.
    assert np.abs(batch_px - image_px).max() < 4.0 / 0.4
    with pytest.raises(ValueError, match="one \\(2, 3\\) matrix per crop"):
        decode_to_image(heatmaps, affines[:1], input_size, heatmap_size)

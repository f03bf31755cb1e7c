"""Heatmap agreement: tolerances, ties, and the error raised when an export does not match."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
from export.verify import VerificationError, compare_heatmaps, require_agreement  # noqa: E402


def peaks(n=2, k=3, h=16, w=12, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hm = rng.uniform(0, 0.2, (n, k, h, w))
    for i in range(n):
        for j in range(k):
            hm[i, j, rng.integers(1, h - 1), rng.integers(1, w - 1)] = 1.0
    return hm.astype(np.float32)


def test_identical_heatmaps_agree_fully():
    hm = peaks()
    a = compare_heatmaps(hm, hm.copy(), stride=4.0, relative_tolerance=1e-3)
    assert a.max_abs_diff == 0 and a.keypoint_agreement == 1.0 and a.exact_argmax_fraction == 1.0
    require_agreement(a, 1.0, "same")


def test_small_noise_passes_and_large_noise_fails():
    hm = peaks()
    noisy = hm + np.random.default_rng(1).normal(0, 1e-5, hm.shape).astype(np.float32)
    assert compare_heatmaps(hm, noisy, 4.0, 1e-3).passes(1.0)
    moved = hm.copy()
    moved[0, 0] = np.roll(moved[0, 0], 5, axis=1)  # one joint's peak moves 5 heatmap px = 20 px
    a = compare_heatmaps(hm, moved, 4.0, 1e-3)
    assert a.keypoint_agreement == pytest.approx(5 / 6)
    assert a.max_keypoint_diff_px == pytest.approx(20.0, abs=2.0)
    with pytest.raises(VerificationError, match="does not match"):
        require_agreement(a, 1.0, "moved")


def test_near_ties_count_as_agreement():
    hm = np.zeros((1, 1, 8, 8), np.float32)
    hm[0, 0, 2, 2] = 0.50001
    hm[0, 0, 6, 6] = 0.5
    other = hm.copy()
    other[0, 0, 2, 2] = 0.49999  # the argmax jumps across the map, but the two peaks tie within tolerance
    a = compare_heatmaps(hm, other, 4.0, 1e-3)
    assert a.exact_argmax_fraction == 0.0 and a.keypoint_agreement == 1.0


def test_tolerance_scales_with_heatmap_magnitude():
    hm = peaks() * 50
    a = compare_heatmaps(hm, hm + 0.02, 4.0, 1e-3)
    assert a.tolerance == pytest.approx(0.05) and a.passes(1.0)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same shape|one shape"):
        compare_heatmaps(peaks(), peaks()[:, :2], 4.0, 1e-3)

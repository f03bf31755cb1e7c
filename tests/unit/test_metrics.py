from __future__ import annotations

import json
import time

import numpy as np
import pytest

from rehab.core.metrics import (
    PCKResult,
    PairedResult,
    bootstrap_ci,
    lsp_torso_size,
    mpii_head_size,
    mpii_head_size_src,
    paired_test,
    pck,
    pckh,
    per_joint_table,
)


def _offsets(dx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """gt at the origin and pred displaced along x by ``dx`` (N, K)."""
    dx = np.asarray(dx, dtype=float)
    gt = np.zeros(dx.shape + (2,))
    pred = gt.copy()
    pred[..., 0] = dx
    return pred, gt


# ------------------------------------------------------------------ threshold and masking


def test_point_on_threshold_is_correct_and_just_beyond_is_not() -> None:
    # head size 10, alpha 0.5 -> threshold 5 px; a 3-4-5 triangle lands exactly on it.
    gt = np.zeros((1, 3, 2))
    pred = np.array([[[3.0, 4.0], [5.0, 0.0], [np.nextafter(5.0, np.inf), 0.0]]])
    result = pckh(pred, gt, np.ones((1, 3), bool), np.array([10.0]))
    assert result.correct.tolist() == [[True, True, False]]
    assert result.per_joint.tolist() == [100.0, 100.0, 0.0]


def test_pck_threshold_uses_alpha_times_reference_size() -> None:
    # 0.2 * 10 = 2: exactly on it counts, 2.001 does not.
    pred, gt = _offsets([[2.0, 2.001, 1.0]])
    result = pck(pred, gt, np.ones((1, 3), bool), np.array([10.0]))
    assert result.alpha == 0.2
    assert result.correct.tolist() == [[True, False, True]]


def test_invisible_joints_are_ignored() -> None:
    pred, gt = _offsets([[0.0, 100.0], [0.0, 0.0]])
    visible = np.array([[True, False], [True, True]])
    result = pckh(pred, gt, visible, np.ones(2))
    assert result.counts.tolist() == [2, 1]
    assert result.per_joint.tolist() == [100.0, 100.0]
    assert result.mean == 100.0
    # correct is False where not visible even though the prediction was scored far off anyway.
    assert result.correct.tolist() == [[True, False], [True, True]]


def test_invisible_joint_with_correct_prediction_is_not_counted() -> None:
    pred, gt = _offsets([[0.0, 0.0]])
    result = pckh(pred, gt, np.array([[True, False]]), np.ones(1))
    assert result.correct.tolist() == [[True, False]]
    assert result.counts.tolist() == [1, 0]


def test_per_joint_nan_when_never_visible() -> None:
    pred, gt = _offsets([[0.0, 0.0, 9.0], [0.0, 0.0, 0.0]])
    visible = np.array([[True, False, True], [True, False, True]])
    result = pckh(pred, gt, visible, np.ones(2))
    assert np.isnan(result.per_joint[1])
    assert result.per_joint[0] == 100.0 and result.per_joint[2] == 50.0
    assert result.mean == 75.0


def test_exclude_leaves_joints_out_of_mean_only() -> None:
    pred, gt = _offsets([[0.0, 9.0, 9.0], [0.0, 9.0, 0.0]])
    visible = np.ones((2, 3), bool)
    full = pckh(pred, gt, visible, np.ones(2))
    excl = pckh(pred, gt, visible, np.ones(2), exclude=(1,))
    assert full.mean == pytest.approx(100 * 3 / 6)
    assert excl.mean == pytest.approx(100 * 3 / 4)
    np.testing.assert_array_equal(full.per_joint, excl.per_joint)
    assert excl.included.tolist() == [True, False, True]
    assert excl.included_correct().shape == (2, 2)


def test_mean_is_weighted_by_visible_counts_not_mean_of_joints() -> None:
    # joint 0: 1 of 1 visible correct (100 %); joint 1: 1 of 3 correct (33.3 %).
    pred, gt = _offsets([[0.0, 0.0], [9.0, 9.0], [9.0, 9.0]])
    visible = np.array([[True, True], [False, True], [False, True]])
    result = pckh(pred, gt, visible, np.ones(3))
    assert result.per_joint.tolist() == pytest.approx([100.0, 100 / 3])
    assert result.mean == pytest.approx(100 * 2 / 4)
    assert result.mean != pytest.approx(np.nanmean(result.per_joint))


def test_nan_prediction_counts_as_wrong() -> None:
    pred, gt = _offsets([[0.0, 0.0]])
    pred[0, 1] = np.nan
    result = pckh(pred, gt, np.ones((1, 2), bool), np.ones(1))
    assert result.correct.tolist() == [[True, False]]
    assert result.mean == 50.0


def test_invisible_image_may_have_zero_or_nan_size() -> None:
    pred, gt = _offsets([[0.0], [0.0], [0.0]])
    visible = np.array([[True], [False], [False]])
    result = pckh(pred, gt, visible, np.array([1.0, 0.0, np.nan]))
    assert result.counts.tolist() == [1]
    assert result.mean == 100.0


def test_all_invisible_gives_nan_mean() -> None:
    pred, gt = _offsets([[0.0, 0.0]])
    result = pckh(pred, gt, np.zeros((1, 2), bool), np.ones(1))
    assert np.isnan(result.mean)
    assert np.isnan(result.per_joint).all()


def test_integer_visibility_flags_are_accepted() -> None:
    pred, gt = _offsets([[0.0, 9.0]])
    result = pckh(pred, gt, np.array([[1, 0]], dtype=np.uint8), np.ones(1))
    assert result.counts.tolist() == [1, 0]


def test_result_is_frozen_and_read_only() -> None:
    pred, gt = _offsets([[0.0]])
    visible = np.ones((1, 1), bool)
    result = pckh(pred, gt, visible, np.ones(1))
    assert isinstance(result, PCKResult)
    with pytest.raises(AttributeError):
        result.mean = 0.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        result.correct[0, 0] = False
    # The caller's own array must stay writable.
    visible[0, 0] = False


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"pred": np.zeros((3, 4))}, r"pred must have shape \(N, K, 2\), got \(3, 4\)"),
        ({"pred": np.zeros((3, 4, 3))}, r"pred must have shape \(N, K, 2\)"),
        ({"gt": np.zeros((3, 5, 2))}, r"gt must have shape .*got \(3, 5, 2\)"),
        ({"gt": np.zeros((2, 4, 2))}, r"gt must have shape"),
        ({"visible": np.ones((3, 5), bool)}, r"visible must have shape \(N, K\) = \(3, 4\), got \(3, 5\)"),
        ({"visible": np.full((3, 4), 2)}, r"visible must be a bool array"),
        ({"head_size": np.ones(4)}, r"head_size must have shape \(N,\) = \(3,\), got \(4,\)"),
        ({"head_size": np.ones((3, 1))}, r"head_size must have shape"),
        ({"head_size": np.array([1.0, 0.0, 1.0])}, r"head_size must be positive"),
        ({"head_size": np.array([1.0, -2.0, 1.0])}, r"head_size must be positive"),
        ({"head_size": np.array([1.0, np.nan, 1.0])}, r"head_size must be positive"),
        ({"exclude": (4,)}, r"exclude must hold joint indices in \[0, 4\)"),
        ({"alpha": 0.0}, r"alpha must be"),
    ],
)
def test_pckh_validation_names_argument(kwargs: dict, pattern: str) -> None:
    args = {
        "pred": np.zeros((3, 4, 2)),
        "gt": np.zeros((3, 4, 2)),
        "visible": np.ones((3, 4), bool),
        "head_size": np.ones(3),
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=pattern):
        pckh(**args)


def test_pck_size_error_names_ref_size() -> None:
    with pytest.raises(ValueError, match=r"ref_size must be positive"):
        pck(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), np.ones((1, 2), bool), np.zeros(1))


def test_nan_gt_where_visible_is_rejected_but_allowed_where_invisible() -> None:
    gt = np.zeros((2, 2, 2))
    gt[1, 0] = np.nan
    pred = np.zeros((2, 2, 2))
    with pytest.raises(ValueError, match=r"^gt has NaN.*\(1, 0\)"):
        pckh(pred, gt, np.ones((2, 2), bool), np.ones(2))
    visible = np.ones((2, 2), bool)
    visible[1, 0] = False
    assert pckh(pred, gt, visible, np.ones(2)).counts.tolist() == [1, 2]


# ------------------------------------------------------------------ sizes


def test_mpii_head_size_layouts_agree() -> None:
    boxes = np.array([[[10.0, 20.0], [13.0, 24.0]], [[0.0, 0.0], [30.0, 40.0]]])  # (N, 2, 2)
    np.testing.assert_allclose(mpii_head_size(boxes), [0.6 * 5, 0.6 * 50])
    src = np.transpose(boxes, (1, 2, 0))  # (2, 2, N) as in the MPII .mat files
    np.testing.assert_array_equal(mpii_head_size_src(src), mpii_head_size(boxes))
    with pytest.raises(ValueError, match=r"headboxes must have shape \(N, 2, 2\)"):
        mpii_head_size(np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"headboxes_src must have shape \(2, 2, N\)"):
        mpii_head_size_src(np.zeros((3, 2, 2)))


def test_lsp_torso_size() -> None:
    gt = np.zeros((2, 3, 2))
    gt[:, 1] = [[3.0, 4.0], [6.0, 8.0]]
    np.testing.assert_allclose(lsp_torso_size(gt, left_shoulder_idx=1, right_hip_idx=0), [5.0, 10.0])
    with pytest.raises(ValueError, match="right_hip_idx"):
        lsp_torso_size(gt, 1, 3)


# ------------------------------------------------------------------ bootstrap


def _random_correct(rng: np.random.Generator, n: int, k: int, p: float) -> tuple[np.ndarray, np.ndarray]:
    visible = rng.random((n, k)) < 0.9
    correct = (rng.random((n, k)) < p) & visible
    return correct, visible


def test_bootstrap_ci_contains_mean_and_narrows_with_more_images() -> None:
    rng = np.random.default_rng(1)
    small = _random_correct(rng, 50, 14, 0.7)
    large = _random_correct(rng, 2000, 14, 0.7)
    mean_s, low_s, high_s = bootstrap_ci(*small, n_boot=500)
    mean_l, low_l, high_l = bootstrap_ci(*large, n_boot=500)
    assert low_s <= mean_s <= high_s
    assert low_l <= mean_l <= high_l
    assert mean_s == pytest.approx(100 * small[0].sum() / small[1].sum())
    assert (high_l - low_l) < 0.5 * (high_s - low_s)


def test_bootstrap_ci_is_reproducible_and_fast() -> None:
    rng = np.random.default_rng(2)
    correct, visible = _random_correct(rng, 1000, 14, 0.8)
    start = time.perf_counter()
    first = bootstrap_ci(correct, visible, n_boot=1000, seed=3)
    elapsed = time.perf_counter() - start
    assert bootstrap_ci(correct, visible, n_boot=1000, seed=3) == first
    assert elapsed < 1.0


def test_bootstrap_ci_validation() -> None:
    with pytest.raises(ValueError, match=r"correct must have shape"):
        bootstrap_ci(np.ones((3, 2), bool), np.ones((3, 4), bool))
    with pytest.raises(ValueError, match=r"ci must"):
        bootstrap_ci(np.ones((3, 2), bool), np.ones((3, 2), bool), ci=1.5)
    with pytest.raises(ValueError, match=r"n_boot must"):
        bootstrap_ci(np.ones((3, 2), bool), np.ones((3, 2), bool), n_boot=0)


# ------------------------------------------------------------------ paired test


def test_paired_test_identical_models() -> None:
    rng = np.random.default_rng(4)
    correct, visible = _random_correct(rng, 300, 14, 0.75)
    result = paired_test(correct, correct.copy(), visible)
    assert isinstance(result, PairedResult)
    assert result.diff == 0.0
    assert result.p_value == 1.0
    assert result.ci_low == 0.0 and result.ci_high == 0.0


def test_paired_test_detects_clearly_better_model() -> None:
    rng = np.random.default_rng(5)
    n, k = 300, 14
    visible = rng.random((n, k)) < 0.9
    base = rng.random((n, k))
    correct_a = (base < 0.85) & visible
    correct_b = (base < 0.75) & visible  # b is right on a subset of a's hits
    result = paired_test(correct_a, correct_b, visible, n_boot=2000)
    expected = 100 * (correct_a.sum() - correct_b.sum()) / visible.sum()
    assert result.diff == pytest.approx(expected)
    assert result.ci_low <= result.diff <= result.ci_high
    assert result.ci_low > 0
    assert result.p_value < 0.001
    reverse = paired_test(correct_b, correct_a, visible, n_boot=2000)
    assert reverse.diff == pytest.approx(-expected)
    assert reverse.p_value == result.p_value


def test_paired_test_no_real_difference_gives_large_p() -> None:
    rng = np.random.default_rng(6)
    visible = np.ones((400, 10), bool)
    correct_a = rng.random((400, 10)) < 0.7
    correct_b = rng.random((400, 10)) < 0.7
    result = paired_test(correct_a, correct_b, visible, n_boot=1000)
    assert result.p_value > 0.01
    assert result.ci_low <= result.diff <= result.ci_high


def test_paired_test_shape_mismatch_names_argument() -> None:
    with pytest.raises(ValueError, match=r"correct_b must have shape"):
        paired_test(np.ones((3, 2), bool), np.ones((3, 3), bool), np.ones((3, 2), bool))


# ------------------------------------------------------------------ table


def test_per_joint_table_rows_and_json() -> None:
    pred, gt = _offsets([[0.0, 9.0, 0.0], [0.0, 0.0, 0.0]])
    visible = np.array([[True, True, False], [True, True, False]])
    result = pckh(pred, gt, visible, np.ones(2), exclude=[0])
    rows = per_joint_table(result, ["a", "b", "c"])
    assert rows == [
        {"joint": "a", "pck": 100.0, "count": 2, "included": False},
        {"joint": "b", "pck": 50.0, "count": 2, "included": True},
        {"joint": "c", "pck": None, "count": 0, "included": True},
        {"joint": "mean", "pck": 50.0, "count": 2, "included": True},
    ]
    json.dumps(rows, allow_nan=False)
    with pytest.raises(ValueError, match="joint_names"):
        per_joint_table(result, ["a"])

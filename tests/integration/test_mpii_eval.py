"""PCKh@0.5 on the real MPII validation ground truth, checked against the standard MPII evaluation formula."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rehab.core.metrics import (
    bootstrap_ci,
    mpii_head_size,
    mpii_head_size_src,
    paired_test,
    pckh,
    per_joint_table,
)

scipy_io = pytest.importorskip("scipy.io")

MPII_FILE = "data/mpii/detections_our_format.mat"
PELVIS, THORAX = 6, 7
# MPII-style summary groups (indices in the MPII-16 order).
SUMMARY_GROUPS = {
    "Head": (8, 9),
    "Shoulder": (12, 13),
    "Elbow": (11, 14),
    "Wrist": (10, 15),
    "Hip": (2, 3),
    "Knee": (1, 4),
    "Ankle": (0, 5),
}


@pytest.fixture(scope="module")
def mpii(shared_dir: Path, require_data) -> dict[str, np.ndarray]:
    path = require_data(shared_dir / MPII_FILE)
    data = scipy_io.loadmat(str(path))
    n = data["pos_gt_src"].shape[2]
    assert data["pos_gt_src"].shape == (16, 2, n)
    assert data["pos_pred_src"].shape == (16, 2, n)
    assert data["jnt_missing"].shape == (16, n)
    assert data["headboxes_src"].shape == (2, 2, n)
    names = [str(np.squeeze(entry)) for entry in np.ravel(data["dataset_joints"])]
    return {
        "pred_src": data["pos_pred_src"],
        "gt_src": data["pos_gt_src"],
        "missing": data["jnt_missing"],
        "headboxes_src": data["headboxes_src"],
        "names": names,
    }


def _reference_pckh(mpii: dict, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray, float]:
    """The MPII evaluation (as in Simple Baselines / HRNet eval) written out on the raw (16, 2, N) arrays."""
    jnt_visible = 1 - mpii["missing"]
    uv_err = np.linalg.norm(mpii["pred_src"] - mpii["gt_src"], axis=1)  # (16, N)
    boxes = mpii["headboxes_src"]
    headsizes = np.linalg.norm(boxes[1, :, :] - boxes[0, :, :], axis=0) * 0.6  # (N,)
    scale = headsizes * np.ones((len(uv_err), 1))
    scaled_uv_err = (uv_err / scale) * jnt_visible
    jnt_count = np.sum(jnt_visible, axis=1)
    less_than_threshold = (scaled_uv_err <= threshold) * jnt_visible
    per_joint = 100.0 * np.sum(less_than_threshold, axis=1) / jnt_count

    masked_pck = np.ma.array(per_joint, mask=False)
    masked_pck.mask[PELVIS:THORAX + 1] = True
    masked_count = np.ma.array(jnt_count, mask=False)
    masked_count.mask[PELVIS:THORAX + 1] = True
    jnt_ratio = masked_count / np.sum(masked_count).astype(np.float64)
    mean = float(np.sum(masked_pck * jnt_ratio))
    return per_joint, jnt_count, mean


def _ours(mpii: dict, exclude=(PELVIS, THORAX)):
    pred = np.transpose(mpii["pred_src"], (2, 0, 1))
    gt = np.transpose(mpii["gt_src"], (2, 0, 1))
    visible = (1 - mpii["missing"]).T.astype(bool)
    head = mpii_head_size_src(mpii["headboxes_src"])
    return pckh(pred, gt, visible, head, alpha=0.5, exclude=exclude)


def test_head_size_layouts(mpii: dict) -> None:
    src = mpii["headboxes_src"]
    ref = np.linalg.norm(src[1] - src[0], axis=0) * 0.6
    np.testing.assert_allclose(mpii_head_size_src(src), ref, rtol=1e-12)
    np.testing.assert_allclose(mpii_head_size(np.transpose(src, (2, 0, 1))), ref, rtol=1e-12)


def test_pckh_matches_mpii_reference(mpii: dict) -> None:
    ref_per_joint, ref_count, ref_mean = _reference_pckh(mpii)
    result = _ours(mpii)

    print("\nMPII PCKh@0.5 per joint (ours vs reference formula):")
    for j, name in enumerate(mpii["names"]):
        print(f"  {j:2d} {name:5s} n={int(result.counts[j]):4d}  ours={result.per_joint[j]:8.4f}  "
              f"ref={ref_per_joint[j]:8.4f}")
    np.testing.assert_allclose(result.per_joint, ref_per_joint, rtol=1e-12)
    np.testing.assert_array_equal(result.counts, ref_count)

    summary = {g: float(np.mean(result.per_joint[list(idx)])) for g, idx in SUMMARY_GROUPS.items()}
    summary_ref = {g: float(np.mean(ref_per_joint[list(idx)])) for g, idx in SUMMARY_GROUPS.items()}
    print("MPII summary (pairs averaged unweighted; Head = upper neck + head top):")
    print("  " + "  ".join(f"{g}={v:.2f}" for g, v in summary.items()))
    print(f"  Head (head top only, as in the HRNet/Simple Baselines table) = {result.per_joint[9]:.2f}")
    print(f"  Mean (excl. pelvis, thorax; count-weighted): ours={result.mean:.6f} ref={ref_mean:.6f}")
    assert summary == pytest.approx(summary_ref, rel=1e-12)
    assert result.mean == pytest.approx(ref_mean, rel=1e-12)

    everything = _ours(mpii, exclude=None)
    print(f"  Mean over all 16 joints: {everything.mean:.4f}")
    assert everything.mean == pytest.approx(100.0 * result.correct.sum() / result.visible.sum())

    rows = per_joint_table(result, mpii["names"])
    assert rows[-1]["joint"] == "mean" and rows[-1]["pck"] == pytest.approx(result.mean)
    assert rows[-1]["count"] == int(ref_count[[j for j in range(16) if j not in (PELVIS, THORAX)]].sum())


def test_bootstrap_and_paired_on_real_data(mpii: dict) -> None:
    result = _ours(mpii)
    mean, low, high = bootstrap_ci(result.included_correct(), result.included_visible(), n_boot=1000)
    print(f"\nMPII PCKh@0.5 mean {mean:.2f}, 95% bootstrap CI over images [{low:.2f}, {high:.2f}]")
    assert mean == pytest.approx(result.mean)
    assert low < mean < high
    assert high - low < 2.0

    # A strictly worse copy of the predictions: every 10th image's predictions pushed far away.
    worse_pred_src = mpii["pred_src"].copy()
    worse_pred_src[:, :, ::10] += 1000.0
    worse = _ours({**mpii, "pred_src": worse_pred_src})
    comparison = paired_test(result.included_correct(), worse.included_correct(), result.included_visible())
    print(f"paired: diff={comparison.diff:.2f} pp CI [{comparison.ci_low:.2f}, {comparison.ci_high:.2f}] "
          f"p={comparison.p_value:.4g}")
    assert comparison.diff > 0
    assert comparison.ci_low > 0
    assert comparison.p_value < 0.01
    same = paired_test(result.included_correct(), result.included_correct(), result.included_visible())
    assert same.diff == 0.0 and same.p_value == 1.0

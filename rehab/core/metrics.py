"""Keypoint accuracy metrics: PCKh (MPII), PCK (LSP) and image-level resampling statistics.

Array conventions: keypoints are (N, K, 2) pixel coordinates, visibility is (N, K) bool, per-image
normalising sizes are (N,). A joint is correct when its distance to the ground truth is at most
``alpha * size``. Only visible joints are scored; predictions may contain NaN (a missed joint, scored wrong).

Statistics resample whole images, because the joints of one image are not independent of each other.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rehab.core.files import json_ready

logger = logging.getLogger(__name__)

__all__ = [
    "PCKResult",
    "PairedResult",
    "pckh",
    "pck",
    "mpii_head_size",
    "mpii_head_size_src",
    "lsp_torso_size",
    "bootstrap_ci",
    "paired_test",
    "per_joint_table",
]

# MPII defines the head size as this fraction of the head-box diagonal.
MPII_HEAD_SIZE_FACTOR = 0.6

# Caps the (resamples x images) block held in memory at once.
_MAX_BLOCK_ELEMENTS = 4_000_000


def _frozen(array: np.ndarray) -> np.ndarray:
    # The result dataclasses are frozen; read-only arrays keep their contents from changing behind them too.
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class PCKResult:
    """Outcome of a PCK-style evaluation.

    per_joint: (K,) percentage correct per joint, NaN where the joint is never visible.
    mean: percentage over the included joints, each weighted by its visible count
        (total correct / total visible), NaN when nothing included is visible.
    counts: (K,) number of visible instances per joint.
    correct: (N, K) bool, per image and joint; False where not visible.
    visible: (N, K) bool, the visibility the result was computed with.
    included: (K,) bool, joints that enter ``mean`` (False for the excluded ones).
    alpha: threshold as a fraction of the normalising size.
    """

    per_joint: np.ndarray
    mean: float
    counts: np.ndarray
    correct: np.ndarray
    visible: np.ndarray
    included: np.ndarray
    alpha: float

    @property
    def num_images(self) -> int:
        return int(self.correct.shape[0])

    @property
    def num_joints(self) -> int:
        return int(self.correct.shape[1])

    def included_correct(self) -> np.ndarray:
        """(N, K_included) correctness, the input ``bootstrap_ci``/``paired_test`` expect for the mean."""
        return self.correct[:, self.included]

    def included_visible(self) -> np.ndarray:
        return self.visible[:, self.included]


@dataclass(frozen=True)
class PairedResult:
    """Comparison of two models on the same images.

    diff: mean_a - mean_b in percentage points.
    ci_low, ci_high: paired-bootstrap confidence interval of ``diff``.
    p_value: two-sided paired permutation test of "no difference".
    """

    diff: float
    ci_low: float
    ci_high: float
    p_value: float


# ----------------------------------------------------------------------------------------------
# validation


def _as_keypoints(value: Any, name: str, expected: tuple[int, int] | None = None) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != 3 or array.shape[2] != 2:
        raise ValueError(f"{name} must have shape (N, K, 2), got {array.shape}")
    if expected is not None and array.shape[:2] != expected:
        raise ValueError(
            f"{name} must have shape (N, K, 2) = ({expected[0]}, {expected[1]}, 2) to match pred, got {array.shape}"
        )
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{name} must be a numeric array of shape (N, K, 2), got dtype {array.dtype}")
    return array.astype(np.float64, copy=False)


def _as_mask(value: Any, name: str, expected: tuple[int, int]) -> np.ndarray:
    array = np.asarray(value)
    if array.shape != expected:
        raise ValueError(f"{name} must have shape (N, K) = {expected}, got {array.shape}")
    if array.dtype == np.bool_:
        return array
    # 0/1 numeric flags (as stored in .mat files) are accepted; anything else is more likely a mistake
    # such as passing MPII's jnt_missing or LSP's inverted flag without thought.
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"{name} must be a bool array of shape (N, K), got dtype {array.dtype}")
    if not np.isin(array, (0, 1)).all():
        raise ValueError(f"{name} must be a bool array of shape (N, K) (0/1 values allowed), got other values")
    return array.astype(bool)


def _as_sizes(value: Any, name: str, n: int) -> np.ndarray:
    array = np.asarray(value)
    if array.shape != (n,):
        raise ValueError(f"{name} must have shape (N,) = ({n},), got {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{name} must be a numeric array of shape (N,), got dtype {array.dtype}")
    return array.astype(np.float64, copy=False)


def _as_exclude(exclude: Iterable[int] | None, k: int) -> np.ndarray:
    included = np.ones(k, dtype=bool)
    if exclude is None:
        return included
    for joint in exclude:
        try:
            index = int(joint)
        except (TypeError, ValueError):
            raise ValueError(f"exclude must hold joint indices in [0, {k}), got {joint!r}") from None
        if index != joint or not 0 <= index < k:
            raise ValueError(f"exclude must hold joint indices in [0, {k}), got {joint!r}")
        included[index] = False
    return included


def _as_alpha(alpha: float) -> float:
    value = float(alpha)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"alpha must be a positive finite number, got {alpha!r}")
    return value


# ----------------------------------------------------------------------------------------------
# PCK


def _pck_impl(
    pred: Any,
    gt: Any,
    visible: Any,
    size: Any,
    size_name: str,
    alpha: float,
    exclude: Iterable[int] | None,
) -> PCKResult:
    pred_arr = _as_keypoints(pred, "pred")
    n, k = pred_arr.shape[:2]
    gt_arr = _as_keypoints(gt, "gt", expected=(n, k))
    vis = _as_mask(visible, "visible", (n, k))
    sizes = _as_sizes(size, size_name, n)
    alpha = _as_alpha(alpha)
    included = _as_exclude(exclude, k)

    if not np.isfinite(gt_arr[vis]).all():
        bad = np.argwhere(vis & ~np.isfinite(gt_arr).all(axis=2))
        raise ValueError(
            f"gt has NaN/inf at {len(bad)} visible joint(s), first (image, joint) = {tuple(int(i) for i in bad[0])}"
        )
    scored_images = vis.any(axis=1)
    bad_size = scored_images & ~(np.isfinite(sizes) & (sizes > 0))
    if bad_size.any():
        first = int(np.flatnonzero(bad_size)[0])
        raise ValueError(
            f"{size_name} must be positive and finite for every image with a visible joint; "
            f"{int(bad_size.sum())} image(s) violate this, first index {first} has {sizes[first]!r}"
        )

    offset = pred_arr - gt_arr
    # Same arithmetic as the MPII reference (sqrt of summed squares, then divide by the size, then
    # compare) so that joints lying on the threshold are classified identically.
    distance = np.sqrt(np.sum(offset * offset, axis=2))
    with np.errstate(divide="ignore", invalid="ignore"):
        normalised = distance / sizes[:, None]
        # NaN (missed) predictions compare False, i.e. count as wrong.
        correct = (normalised <= alpha) & vis

    counts = vis.sum(axis=0)
    hits = correct.sum(axis=0)
    per_joint = np.full(k, np.nan)
    seen = counts > 0
    per_joint[seen] = 100.0 * hits[seen] / counts[seen]

    total_visible = int(counts[included].sum())
    if total_visible == 0:
        logger.warning("no visible joint among the included joints; mean PCK is NaN")
        mean = float("nan")
    else:
        mean = 100.0 * float(hits[included].sum()) / total_visible

    return PCKResult(
        per_joint=_frozen(per_joint),
        mean=mean,
        counts=_frozen(counts.astype(np.int64)),
        correct=_frozen(correct),
        visible=_frozen(vis.copy()),
        included=_frozen(included),
        alpha=alpha,
    )


def pckh(
    pred: Any,
    gt: Any,
    visible: Any,
    head_size: Any,
    alpha: float = 0.5,
    exclude: Iterable[int] | None = None,
) -> PCKResult:
    """PCKh@alpha: correct when the distance is at most ``alpha * head_size`` (MPII uses alpha 0.5 and
    exclude=(6, 7), pelvis and thorax). ``head_size`` is (N,), e.g. from :func:`mpii_head_size`."""
    return _pck_impl(pred, gt, visible, head_size, "head_size", alpha, exclude)


def pck(
    pred: Any,
    gt: Any,
    visible: Any,
    ref_size: Any,
    alpha: float = 0.2,
    exclude: Iterable[int] | None = None,
) -> PCKResult:
    """PCK@alpha against an arbitrary per-image reference size, e.g. the LSP torso (:func:`lsp_torso_size`)."""
    return _pck_impl(pred, gt, visible, ref_size, "ref_size", alpha, exclude)


# ----------------------------------------------------------------------------------------------
# normalising sizes


def mpii_head_size(headboxes: Any) -> np.ndarray:
    """Head sizes (N,) from head boxes (N, 2, 2) laid out as [[x1, y1], [x2, y2]]: 0.6 x the box diagonal.

    For the (2, 2, N) ``headboxes_src`` layout of the MPII .mat files use :func:`mpii_head_size_src`.
    """
    boxes = np.asarray(headboxes, dtype=np.float64)
    if boxes.ndim != 3 or boxes.shape[1:] != (2, 2):
        raise ValueError(f"headboxes must have shape (N, 2, 2) as [[x1, y1], [x2, y2]], got {boxes.shape}")
    diagonal = boxes[:, 1, :] - boxes[:, 0, :]
    return np.sqrt(np.sum(diagonal * diagonal, axis=1)) * MPII_HEAD_SIZE_FACTOR


def mpii_head_size_src(headboxes_src: Any) -> np.ndarray:
    """Head sizes (N,) from the MPII evaluation layout (2, 2, N): [corner, coordinate, image]."""
    boxes = np.asarray(headboxes_src, dtype=np.float64)
    if boxes.ndim != 3 or boxes.shape[:2] != (2, 2):
        raise ValueError(f"headboxes_src must have shape (2, 2, N) as [corner, xy, image], got {boxes.shape}")
    return mpii_head_size(np.transpose(boxes, (2, 0, 1)))


def lsp_torso_size(gt: Any, left_shoulder_idx: int, right_hip_idx: int) -> np.ndarray:
    """Torso sizes (N,): distance from the left shoulder to the right hip of the ground truth (N, K, 2).

    Indices are passed in so that this module stays independent of any joint table. LSP stores positions
    for occluded joints too, so the size is defined for them; a NaN position yields a NaN size, which
    :func:`pck` rejects for images that have visible joints.
    """
    keypoints = _as_keypoints(gt, "gt")
    k = keypoints.shape[1]
    for name, index in (("left_shoulder_idx", left_shoulder_idx), ("right_hip_idx", right_hip_idx)):
        if int(index) != index or not 0 <= int(index) < k:
            raise ValueError(f"{name} must be a joint index in [0, {k}), got {index!r}")
    torso = keypoints[:, int(left_shoulder_idx), :] - keypoints[:, int(right_hip_idx), :]
    return np.sqrt(np.sum(torso * torso, axis=1))


# ----------------------------------------------------------------------------------------------
# resampling statistics


def _per_image_counts(correct: Any, visible: Any, correct_name: str = "correct") -> tuple[np.ndarray, np.ndarray]:
    vis_raw = np.asarray(visible)
    if vis_raw.ndim != 2:
        raise ValueError(f"visible must have shape (N, K), got {vis_raw.shape}")
    vis = _as_mask(vis_raw, "visible", vis_raw.shape)
    hit = _as_mask(correct, correct_name, vis.shape)
    # A joint that is not visible cannot be correct, whatever the caller passed.
    return (hit & vis).sum(axis=1).astype(np.float64), vis.sum(axis=1).astype(np.float64)


def _check_n_boot(n_boot: int) -> int:
    value = int(n_boot)
    if value != n_boot or value < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    return value


def _block_rows(n_images: int) -> int:
    return max(1, _MAX_BLOCK_ELEMENTS // max(n_images, 1))


def _resample_sums(
    rng: np.random.Generator, n_boot: int, values: np.ndarray
) -> np.ndarray:
    """(n_boot, M) sums of ``values`` (N, M) over images drawn with replacement."""
    n = values.shape[0]
    out = np.empty((n_boot, values.shape[1]))
    step = _block_rows(n)
    for start in range(0, n_boot, step):
        stop = min(start + step, n_boot)
        # Multiplicities of each image in each resample; a matrix product then sums every resample at once.
        rows = stop - start
        draws = rng.integers(0, n, size=(rows, n)) + (np.arange(rows) * n)[:, None]
        weights = np.bincount(draws.ravel(), minlength=rows * n).reshape(rows, n).astype(np.float64)
        out[start:stop] = weights @ values
    return out


def _percentile_interval(samples: np.ndarray, ci: float) -> tuple[float, float]:
    tail = (1.0 - ci) / 2.0
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return float("nan"), float("nan")
    if finite.size < samples.size:
        logger.warning("%d of %d resamples had no visible joint and were dropped", samples.size - finite.size,
                       samples.size)
    low, high = np.quantile(finite, [tail, 1.0 - tail])
    return float(low), float(high)


def _check_ci(ci: float) -> float:
    value = float(ci)
    if not 0.0 < value < 1.0:
        raise ValueError(f"ci must lie strictly between 0 and 1, got {ci!r}")
    return value


def bootstrap_ci(
    correct: Any,
    visible: Any,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Percentile bootstrap over images of the visible-weighted mean percentage.

    ``correct`` and ``visible`` are (N, K) bool; pass only the joints that belong in the mean
    (e.g. ``result.included_correct()``, ``result.included_visible()``). Returns (mean, low, high).
    """
    n_boot = _check_n_boot(n_boot)
    ci = _check_ci(ci)
    hits, seen = _per_image_counts(correct, visible)
    total = seen.sum()
    if total == 0:
        logger.warning("bootstrap_ci: nothing visible; returning NaN")
        return float("nan"), float("nan"), float("nan")
    mean = 100.0 * hits.sum() / total

    rng = np.random.default_rng(seed)
    sums = _resample_sums(rng, n_boot, np.stack([hits, seen], axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        boots = 100.0 * sums[:, 0] / sums[:, 1]
    low, high = _percentile_interval(boots, ci)
    return float(mean), low, high


def paired_test(
    correct_a: Any,
    correct_b: Any,
    visible: Any,
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
) -> PairedResult:
    """Compare two models scored on the same images and joints.

    diff is mean_a - mean_b (percentage points); its CI comes from resampling images (pairs kept together);
    the p-value from a two-sided permutation test that swaps the two models' outcomes per image
    (``n_boot`` random swaps, with the observed labelling counted so p is never 0).
    """
    n_boot = _check_n_boot(n_boot)
    ci = _check_ci(ci)
    hits_a, seen = _per_image_counts(correct_a, visible, "correct_a")
    hits_b, _ = _per_image_counts(correct_b, visible, "correct_b")
    total = seen.sum()
    if total == 0:
        logger.warning("paired_test: nothing visible; returning NaN")
        return PairedResult(float("nan"), float("nan"), float("nan"), float("nan"))

    # Per-image differences in correct counts are integers, so the permutation comparison below is exact.
    delta = hits_a - hits_b
    observed = delta.sum()
    diff = 100.0 * observed / total

    rng = np.random.default_rng(seed)
    sums = _resample_sums(rng, n_boot, np.stack([delta, seen], axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        boots = 100.0 * sums[:, 0] / sums[:, 1]
    ci_low, ci_high = _percentile_interval(boots, ci)

    # Swapping a and b on an image flips the sign of its delta and leaves the shared denominator unchanged,
    # so the statistic reduces to the signed sum of deltas.
    n = delta.shape[0]
    extreme = 0
    step = _block_rows(n)
    for start in range(0, n_boot, step):
        stop = min(start + step, n_boot)
        signs = rng.integers(0, 2, size=(stop - start, n)).astype(np.float64) * 2.0 - 1.0
        extreme += int(np.count_nonzero(np.abs(signs @ delta) >= abs(observed)))
    p_value = (extreme + 1) / (n_boot + 1)

    return PairedResult(diff=float(diff), ci_low=ci_low, ci_high=ci_high, p_value=float(p_value))


# ----------------------------------------------------------------------------------------------
# reporting


def per_joint_table(result: PCKResult, joint_names: Sequence[str]) -> list[dict[str, Any]]:
    """Rows {"joint", "pck", "count", "included"} per joint, then a "mean" row; NaN becomes None."""
    names = list(joint_names)
    if len(names) != result.num_joints:
        raise ValueError(f"joint_names must have {result.num_joints} entries to match the result, got {len(names)}")
    rows: list[dict[str, Any]] = [
        {
            "joint": name,
            "pck": json_ready(float(result.per_joint[j])),
            "count": int(result.counts[j]),
            "included": bool(result.included[j]),
        }
        for j, name in enumerate(names)
    ]
    rows.append(
        {
            "joint": "mean",
            "pck": json_ready(result.mean),
            "count": int(result.counts[result.included].sum()),
            "included": True,
        }
    )
    return rows

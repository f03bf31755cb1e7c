"""Statistics of a study (numpy only): per-arm bootstrap intervals and paired comparisons between arms.

Single test sets use the core's ``bootstrap_ci`` and ``paired_test``. The paper's "average" column is the
unweighted mean of the source and target scores; its intervals resample images within each test set
separately (a stratified bootstrap) and its p-value comes from the same per-image sign-flip permutation as
``paired_test``, applied to both test sets at once. Images, not joints, are the resampling unit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rehab.core.metrics import PairedResult, PCKResult, bootstrap_ci, paired_test

# Sign-flip statistics are sums of floats: ties with the observed value must not be lost to rounding.
_TIE_TOLERANCE = 1e-9
# Caps the (resamples x images) blocks held in memory at once.
_MAX_BLOCK_ELEMENTS = 4_000_000


def _counts(result: PCKResult) -> tuple[np.ndarray, np.ndarray]:
    """Per image: correct and visible joints among those that enter the mean."""
    return (result.included_correct().sum(axis=1).astype(np.float64),
            result.included_visible().sum(axis=1).astype(np.float64))


def _check_same_images(a: PCKResult, b: PCKResult, what: str) -> None:
    if a.visible.shape != b.visible.shape or not np.array_equal(a.visible, b.visible):
        raise ValueError(f"{what}: the two arms were not scored on the same images and joints "
                         f"(visibility masks differ, shapes {a.visible.shape} and {b.visible.shape})")


def _percentile(samples: np.ndarray, ci: float) -> tuple[float, float]:
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - ci) / 2.0
    low, high = np.quantile(finite, [tail, 1.0 - tail])
    return float(low), float(high)


def _resampled_ratio(rng: np.random.Generator, n_boot: int, numer: np.ndarray, denom: np.ndarray) -> np.ndarray:
    """(n_boot,) ratio sum(numer)/sum(denom) over images drawn with replacement."""
    n = numer.shape[0]
    out = np.empty(n_boot)
    rows_per_block = max(1, _MAX_BLOCK_ELEMENTS // max(n, 1))
    for start in range(0, n_boot, rows_per_block):
        stop = min(start + rows_per_block, n_boot)
        idx = rng.integers(0, n, size=(stop - start, n))
        with np.errstate(divide="ignore", invalid="ignore"):
            out[start:stop] = numer[idx].sum(axis=1) / denom[idx].sum(axis=1)
    return out


def domain_ci(result: PCKResult, n_boot: int, ci: float, seed: int) -> tuple[float, float, float]:
    """(mean, low, high) of one test set's mean score, via the core bootstrap."""
    return bootstrap_ci(result.included_correct(), result.included_visible(), n_boot=n_boot, ci=ci, seed=seed)


def per_joint_ci(result: PCKResult, n_boot: int, ci: float, seed: int) -> list[tuple[float, float] | None]:
    """Per joint (all K): (low, high) bootstrap interval, None where never visible."""
    out: list[tuple[float, float] | None] = []
    for k in range(result.num_joints):
        if result.counts[k] == 0:
            out.append(None)
            continue
        _, low, high = bootstrap_ci(result.correct[:, [k]], result.visible[:, [k]], n_boot=n_boot, ci=ci, seed=seed)
        out.append((low, high))
    return out


def average_ci(results: Sequence[PCKResult], n_boot: int, ci: float, seed: int) -> tuple[float, float, float]:
    """(mean, low, high) of the unweighted mean over test sets; images resampled within each set."""
    if not results:
        raise ValueError("average_ci needs at least one test set")
    rng = np.random.default_rng(seed)
    means, boots = [], []
    for r in results:
        hits, seen = _counts(r)
        means.append(100.0 * hits.sum() / seen.sum() if seen.sum() > 0 else float("nan"))
        boots.append(100.0 * _resampled_ratio(rng, n_boot, hits, seen))
    low, high = _percentile(np.mean(boots, axis=0), ci)
    return float(np.mean(means)), low, high


def paired_domain(a: PCKResult, b: PCKResult, n_boot: int, ci: float, seed: int) -> PairedResult:
    """Arm a minus arm b on one test set (core paired bootstrap + permutation test)."""
    _check_same_images(a, b, "paired comparison")
    return paired_test(a.included_correct(), b.included_correct(), a.included_visible(), n_boot=n_boot, seed=seed,
                       ci=ci)


def paired_average(results_a: Sequence[PCKResult], results_b: Sequence[PCKResult], n_boot: int, ci: float,
                   seed: int) -> PairedResult:
    """Arm a minus arm b on the unweighted mean over test sets.

    CI: images resampled within each test set, pairs kept together. p-value: two-sided permutation test that
    swaps the two arms' outcomes per image in every test set (observed labelling counted, so p > 0).
    """
    if len(results_a) != len(results_b) or not results_a:
        raise ValueError(f"paired_average needs the same non-zero number of test sets, got {len(results_a)} and "
                         f"{len(results_b)}")
    rng = np.random.default_rng(seed)
    n_sets = len(results_a)
    diffs, boots, weighted = [], [], []
    for a, b in zip(results_a, results_b):
        _check_same_images(a, b, "paired comparison of the average")
        hits_a, seen = _counts(a)
        hits_b, _ = _counts(b)
        delta = hits_a - hits_b
        total = seen.sum()
        if total == 0:
            raise ValueError("a test set has no visible joint; the average is undefined")
        diffs.append(100.0 * delta.sum() / total)
        boots.append(100.0 * _resampled_ratio(rng, n_boot, delta, seen))
        # Each image's contribution to the average difference; swapping the arms on it flips its sign.
        weighted.append(100.0 * delta / (total * n_sets))
    diff = float(np.mean(diffs))
    low, high = _percentile(np.mean(boots, axis=0), ci)
    contrib = np.concatenate(weighted)
    observed = abs(contrib.sum())
    extreme = 0
    rows_per_block = max(1, _MAX_BLOCK_ELEMENTS // max(contrib.size, 1))
    for start in range(0, n_boot, rows_per_block):
        stop = min(start + rows_per_block, n_boot)
        signs = rng.integers(0, 2, size=(stop - start, contrib.size)).astype(np.float64) * 2.0 - 1.0
        extreme += int(np.count_nonzero(np.abs(signs @ contrib) >= observed - _TIE_TOLERANCE))
    p_value = (extreme + 1) / (n_boot + 1)
    return PairedResult(diff=diff, ci_low=low, ci_high=high, p_value=float(p_value))

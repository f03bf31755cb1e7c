"""Does the exported file compute what the network computes? Heatmap differences and keypoint agreement.

Two decoded keypoints "agree" when they are within one heatmap pixel of each other, or when their argmax
locations are a tie within the heatmap tolerance (an untrained or uncertain map can have two nearly equal
peaks, and any rounding then legitimately picks either). A genuine disagreement is anything else.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from rehab.core.heatmaps import decode

logger = logging.getLogger(__name__)

# FP32 ONNX Runtime vs torch: measured 1e-5 (ResNet-18) to 2.3e-4 (ResNet-50) on heatmaps peaking near 1.
# Tolerances are relative to max(1, the reference's largest |value|), so they hold for untrained nets too.
FP32_HEATMAP_TOLERANCE = 1e-3
# FP16 variant vs the FP32 file: half precision keeps ~3 significant digits through a deep network.
FP16_HEATMAP_TOLERANCE = 3e-2
# Fraction of (image, joint) keypoints that must agree (see module doc) for a variant to pass.
FP32_MIN_KEYPOINT_AGREEMENT = 1.0
FP16_MIN_KEYPOINT_AGREEMENT = 0.98


class VerificationError(RuntimeError):
    """The exported model does not reproduce the reference beyond the stated tolerance."""


@dataclass(frozen=True)
class Agreement:
    """How a candidate's heatmaps (N, K, H, W) match a reference's."""

    num_images: int
    max_abs_diff: float
    tolerance: float  # absolute, already scaled by the reference's magnitude
    keypoint_agreement: float  # fraction of (image, joint) agreeing (ties count as agreeing)
    exact_argmax_fraction: float  # fraction with the identical integer argmax
    max_keypoint_diff_px: float  # largest decoded distance in input-crop pixels, ties included

    def passes(self, min_keypoint_agreement: float) -> bool:
        return self.max_abs_diff <= self.tolerance and self.keypoint_agreement >= min_keypoint_agreement

    def summary(self) -> str:
        return (f"{self.num_images} images: max |heatmap diff| {self.max_abs_diff:.2e} (tolerance {self.tolerance:.2e}), "
                f"keypoints agree {100 * self.keypoint_agreement:.2f}% (identical argmax "
                f"{100 * self.exact_argmax_fraction:.2f}%, largest shift {self.max_keypoint_diff_px:.2f} px)")

    def to_dict(self) -> dict:
        return {"images": self.num_images, "max_abs_diff": self.max_abs_diff, "tolerance": self.tolerance,
                "keypoint_agreement": self.keypoint_agreement, "exact_argmax_fraction": self.exact_argmax_fraction,
                "max_keypoint_diff_px": self.max_keypoint_diff_px}


def compare_heatmaps(reference: np.ndarray, candidate: np.ndarray, stride: float, relative_tolerance: float) -> Agreement:
    """Compare heatmaps (N, K, H, W); ``stride`` is input pixels per heatmap pixel."""
    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    if ref.shape != cand.shape or ref.ndim != 4:
        raise ValueError(f"heatmaps to compare must both be (N, K, H, W) of one shape, got {ref.shape} and {cand.shape}")
    tolerance = relative_tolerance * max(1.0, float(np.abs(ref).max()))
    max_abs = float(np.abs(ref - cand).max())
    kp_ref, _ = decode(ref, stride=stride)
    kp_cand, _ = decode(cand, stride=stride)
    dist = np.linalg.norm(kp_ref - kp_cand, axis=-1)
    n, k, h, w = ref.shape
    flat_ref = ref.reshape(n, k, h * w)
    arg_ref = flat_ref.argmax(-1)
    arg_cand = cand.reshape(n, k, h * w).argmax(-1)
    # The reference's own value at the candidate's peak: a tie if it is within tolerance of the true peak.
    ref_at_cand = np.take_along_axis(flat_ref, arg_cand[..., None], -1)[..., 0]
    tie = flat_ref.max(-1) - ref_at_cand <= tolerance
    agree = (dist <= stride) | tie
    return Agreement(num_images=n, max_abs_diff=max_abs, tolerance=tolerance,
                     keypoint_agreement=float(agree.mean()), exact_argmax_fraction=float((arg_ref == arg_cand).mean()),
                     max_keypoint_diff_px=float(dist.max()))


def require_agreement(agreement: Agreement, min_keypoint_agreement: float, what: str) -> None:
    """Raise VerificationError naming ``what`` unless ``agreement`` passes."""
    if not agreement.passes(min_keypoint_agreement):
        raise VerificationError(f"{what} does not match: {agreement.summary()}; required max diff <= "
                                f"{agreement.tolerance:.2e} and keypoint agreement >= {100 * min_keypoint_agreement:.0f}%")
    logger.info("%s matches: %s", what, agreement.summary())


# Presence logits: the same relative tolerances as the heatmaps (relative to max(1, the largest |logit|)).
# The decision (probability >= threshold) must agree on every crop for FP32 and on this share for FP16.
FP16_MIN_PRESENCE_AGREEMENT = 0.98


@dataclass(frozen=True)
class PresenceAgreement:
    """How a candidate's presence logits (N, 1) match a reference's."""

    num_images: int
    max_abs_diff: float
    tolerance: float
    threshold: float
    decision_agreement: float  # fraction of crops on the same side of the threshold

    def passes(self, min_decision_agreement: float) -> bool:
        return self.max_abs_diff <= self.tolerance and self.decision_agreement >= min_decision_agreement

    def summary(self) -> str:
        return (f"{self.num_images} crops: max |presence logit diff| {self.max_abs_diff:.2e} (tolerance "
                f"{self.tolerance:.2e}), same decision at p >= {self.threshold:g} on "
                f"{100 * self.decision_agreement:.2f}%")

    def to_dict(self) -> dict:
        return {"images": self.num_images, "max_abs_diff": self.max_abs_diff, "tolerance": self.tolerance,
                "threshold": self.threshold, "decision_agreement": self.decision_agreement}


def compare_presence(reference: np.ndarray, candidate: np.ndarray, threshold: float,
                     relative_tolerance: float) -> PresenceAgreement:
    """Compare presence logits (N, 1); ``threshold`` is the probability that decides "person"."""
    ref = np.asarray(reference, dtype=np.float64).reshape(-1)
    cand = np.asarray(candidate, dtype=np.float64).reshape(-1)
    if ref.shape != cand.shape or ref.size == 0:
        raise ValueError(f"presence logits to compare must have one shape, got {np.shape(reference)} and "
                         f"{np.shape(candidate)}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be a probability in (0, 1), got {threshold}")
    logit_threshold = float(np.log(threshold / (1.0 - threshold)))
    tolerance = relative_tolerance * max(1.0, float(np.abs(ref).max()))
    return PresenceAgreement(num_images=int(ref.size), max_abs_diff=float(np.abs(ref - cand).max()),
                             tolerance=tolerance, threshold=float(threshold),
                             decision_agreement=float(((ref >= logit_threshold) == (cand >= logit_threshold)).mean()))


def require_presence_agreement(agreement: PresenceAgreement, min_decision_agreement: float, what: str) -> None:
    if not agreement.passes(min_decision_agreement):
        raise VerificationError(f"{what}: the presence output does not match: {agreement.summary()}; required max diff "
                                f"<= {agreement.tolerance:.2e} and the same decision on >= "
                                f"{100 * min_decision_agreement:.0f}% of the crops")
    logger.info("%s presence matches: %s", what, agreement.summary())

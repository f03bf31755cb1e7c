"""Presence ("is a person in this crop?") as a binary classification: confusion counts at a threshold, ROC AUC,
and the threshold that keeps a recall. Scores are probabilities (higher: a person more likely); labels 1 for a
crop that shows a person."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rehab.core.files import json_ready


@dataclass(frozen=True)
class BinaryResult:
    """A score threshold's confusion counts over crops; positives are crops that show a person."""

    threshold: float
    true_pos: int
    false_neg: int
    true_neg: int
    false_pos: int

    @property
    def recall(self) -> float:
        """Persons found (sensitivity): a missed person is the costly error."""
        n = self.true_pos + self.false_neg
        return self.true_pos / n if n else float("nan")

    @property
    def specificity(self) -> float:
        """Person-free crops rejected (1 - phantom rate)."""
        n = self.true_neg + self.false_pos
        return self.true_neg / n if n else float("nan")

    @property
    def accuracy(self) -> float:
        n = self.true_pos + self.false_neg + self.true_neg + self.false_pos
        return (self.true_pos + self.true_neg) / n if n else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "true_pos": self.true_pos, "false_neg": self.false_neg,
                "true_neg": self.true_neg, "false_pos": self.false_pos, "recall": json_ready(self.recall),
                "specificity": json_ready(self.specificity), "accuracy": json_ready(self.accuracy)}


def _binary_inputs(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"scores and labels must have one value per crop, got {s.shape} and {y.shape}")
    if not np.isfinite(s).all():
        raise ValueError("presence scores must be finite")
    return s, y.astype(bool)


def binary_at(scores: Any, labels: Any, threshold: float) -> BinaryResult:
    """Confusion counts when ``score >= threshold`` means "person"; ``labels`` True = a person is there."""
    s, y = _binary_inputs(scores, labels)
    pred = s >= threshold
    return BinaryResult(float(threshold), int((pred & y).sum()), int((~pred & y).sum()), int((~pred & ~y).sum()),
                        int((pred & ~y).sum()))


def roc_auc(scores: Any, labels: Any) -> float:
    """Area under the ROC curve (the probability that a random positive scores above a random negative; ties
    count half); NaN without both classes."""
    s, y = _binary_inputs(scores, labels)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    allv = np.concatenate([pos, neg])[order]
    # Average ranks over ties (1-based), the Mann-Whitney form of the AUC.
    i = 0
    while i < len(allv):
        j = i
        while j + 1 < len(allv) and allv[j + 1] == allv[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    rank_sum = ranks[:len(pos)].sum()
    return float((rank_sum - len(pos) * (len(pos) + 1) / 2.0) / (len(pos) * len(neg)))


def threshold_for_recall(scores: Any, labels: Any, min_recall: float) -> float:
    """The highest threshold whose recall of positives is at least ``min_recall``: as many person-free crops
    rejected as possible without missing more persons than allowed."""
    if not 0.0 < min_recall <= 1.0:
        raise ValueError(f"min_recall must lie in (0, 1], got {min_recall}")
    s, y = _binary_inputs(scores, labels)
    pos = np.sort(s[y])
    if len(pos) == 0:
        raise ValueError("choosing a threshold for recall needs positive crops")
    allowed_misses = int(np.floor((1.0 - min_recall) * len(pos) + 1e-9))
    return float(pos[allowed_misses])

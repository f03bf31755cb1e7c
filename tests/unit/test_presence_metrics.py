"""Presence as binary classification: confusion counts, ROC AUC and the recall-first threshold (rehab.core)."""

from __future__ import annotations

import numpy as np
import pytest

from rehab.core.presence_metrics import binary_at, roc_auc, threshold_for_recall
from rehab.runtime.model import Pose, presence_probability


def test_confusion_counts_at_a_threshold():
    scores = [0.9, 0.6, 0.4, 0.2, 0.7, 0.1]
    labels = [True, True, True, False, False, False]
    r = binary_at(scores, labels, 0.5)
    assert (r.true_pos, r.false_neg, r.true_neg, r.false_pos) == (2, 1, 2, 1)
    assert r.recall == pytest.approx(2 / 3) and r.specificity == pytest.approx(2 / 3)
    assert binary_at(scores, labels, 0.4).recall == 1.0  # score >= threshold counts as a person


def test_roc_auc_perfect_reversed_and_ties():
    assert roc_auc([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == 1.0
    assert roc_auc([0.1, 0.2, 0.9, 0.8], [1, 1, 0, 0]) == 0.0
    assert roc_auc([0.5, 0.5, 0.5, 0.5], [1, 0, 1, 0]) == 0.5
    rng = np.random.default_rng(0)
    s, y = rng.random(200), rng.random(200) < 0.5
    # Against the definition: the share of (positive, negative) pairs ordered correctly, ties half.
    pairs = (s[y][:, None] > s[~y][None, :]).mean() + 0.5 * (s[y][:, None] == s[~y][None, :]).mean()
    assert roc_auc(s, y) == pytest.approx(pairs)
    assert np.isnan(roc_auc([0.3, 0.4], [1, 1]))


def test_threshold_for_recall_keeps_the_recall_and_is_the_highest_such():
    rng = np.random.default_rng(1)
    scores = rng.random(1000)
    labels = rng.random(1000) < 0.5
    t = threshold_for_recall(scores, labels, 0.99)
    assert binary_at(scores, labels, t).recall >= 0.99
    above = np.nextafter(t, 1.0)
    assert binary_at(scores, labels, above).recall < 0.99
    with pytest.raises(ValueError, match="min_recall"):
        threshold_for_recall(scores, labels, 1.5)


def test_sigmoid_is_stable_and_pose_presence_is_a_probability():
    p = presence_probability(np.array([[0.0], [800.0], [-800.0], [2.0]]))
    assert p[0] == 0.5 and p[1] == 1.0 and p[2] == 0.0 and p[3] == pytest.approx(1 / (1 + np.exp(-2.0)))
    names = ("a", "b")
    assert Pose(np.zeros((2, 2)), np.zeros(2), names).presence is None
    assert Pose(np.zeros((2, 2)), np.zeros(2), names, presence=0.25).presence == 0.25
    with pytest.raises(ValueError, match="presence"):
        Pose(np.zeros((2, 2)), np.zeros(2), names, presence=1.5)

"""Heatmap regression loss of Simple Baselines: mean squared error weighted per joint."""

from __future__ import annotations

import torch
from torch import nn

# Simple Baselines halves the squared error (0.5 * MSE per joint, averaged over joints).
MSE_HALF = 0.5


class JointsMSELoss(nn.Module):
    """0.5 * mean over joints of MSE(pred_k * w_k, target_k * w_k); w = 0 removes a joint."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor, target_weight: torch.Tensor) -> torch.Tensor:
        if pred.shape != target.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")
        n, k = pred.shape[:2]
        if target_weight.shape != (n, k):
            raise ValueError(f"target_weight must have shape ({n}, {k}), got {tuple(target_weight.shape)}")
        w = target_weight.to(pred.dtype).view(n, k, 1, 1)
        diff = (pred.float() - target.float()) * w.float()
        return MSE_HALF * diff.pow(2).mean()


class PresenceLoss(nn.Module):
    """Binary cross-entropy of presence logits (N, 1) against targets (N,), weighted per sample; the mean over
    the samples whose weight is non-zero (0 when there are none)."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        logits = logits.float().reshape(-1)
        if logits.shape != target.shape or target.shape != weight.shape:
            raise ValueError(f"presence logits {tuple(logits.shape)}, targets {tuple(target.shape)} and weights "
                             f"{tuple(weight.shape)} must hold one value per sample")
        per_sample = nn.functional.binary_cross_entropy_with_logits(logits, target.float(), reduction="none")
        w = weight.float()
        return (per_sample * w).sum() / w.sum().clamp(min=1.0)

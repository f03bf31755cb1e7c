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

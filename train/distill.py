"""Knowledge distillation for heatmap regression: the student's targets blend the Gaussian of the annotation with
the heatmaps a frozen teacher predicts on the same augmented crop (optionally its flip-test ensemble).

Annotated joints get ``(1 - alpha) x Gaussian + alpha x teacher``; joints without an annotation (LSPET's
unlabelled ones, weight 0 in plain training) get the teacher's map alone at weight 1, which is where a teacher
adds information the labels do not have. The teacher may have another input or heatmap size: the crop is resized
to its input and its heatmaps back to the student's (both bilinear; the stride is 4 in both, so the maps cover the
same crop).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F

from train.model import load_checkpoint
from train.preprocess import normalize_tensor
from rehab.core.heatmaps import flip_shift
from rehab.core.skeleton import get_joint_set

logger = logging.getLogger(__name__)


class Teacher:
    """A frozen pose model that turns a batch of uint8 crops into heatmaps of the student's size."""

    def __init__(self, checkpoint: str, student_model_cfg, device: torch.device, flip: bool = True,
                 channels_last: bool = False) -> None:
        model, cfg, _ = load_checkpoint(checkpoint)
        tm = cfg.model
        if tm.joint_set != student_model_cfg.joint_set:
            raise ValueError(f"the teacher {checkpoint} predicts joint set {tm.joint_set!r}, the student "
                             f"{student_model_cfg.joint_set!r}; distillation needs the same joints")
        if tm.heatmap_encoding != student_model_cfg.heatmap_encoding:
            raise ValueError(f"the teacher's heatmap encoding ({tm.heatmap_encoding}) differs from the student's "
                             f"({student_model_cfg.heatmap_encoding}): their maps would place joints differently")
        for p in model.parameters():
            p.requires_grad_(False)
        self.model = model.to(device).eval()
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.cfg = tm
        self.flip = flip
        self.shift = flip_shift(tm.heatmap_encoding)
        self.perm = torch.tensor(np.asarray(get_joint_set(tm.joint_set).flip_permutation).tolist(), device=device)
        self.channels_last = channels_last
        logger.info("distilling from %s (%dx%d input%s)", checkpoint, tm.input_size[0], tm.input_size[1],
                    ", flip ensemble" if flip else "")

    @torch.no_grad()
    def heatmaps(self, images_u8: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
        """(N, K, out_h, out_w) float heatmaps for a (N, 3, H, W) uint8 batch, in eval mode, without gradients."""
        x = normalize_tensor(images_u8, self.cfg)
        w, h = self.cfg.input_size
        if tuple(x.shape[-2:]) != (h, w):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        hm = self.model(x).float()
        if self.flip:
            back = self.model(torch.flip(x, dims=[3])).float()[:, self.perm].flip(dims=[3])
            if self.shift:
                back = torch.cat([back[..., :1], back[..., :-1]], dim=-1)
            hm = (hm + back) / 2
        if tuple(hm.shape[-2:]) != tuple(out_hw):
            hm = F.interpolate(hm, size=tuple(out_hw), mode="bilinear", align_corners=False)
        return hm


def blend_targets(target: torch.Tensor, weight: torch.Tensor, teacher_hm: torch.Tensor,
                  alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(targets, weights) for the loss: annotated joints (weight > 0) mix the Gaussian and the teacher at
    ``alpha``; the others take the teacher alone, at weight 1."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"train.distill_alpha must be in [0, 1], got {alpha}")
    if teacher_hm.shape != target.shape:
        raise ValueError(f"teacher heatmaps {tuple(teacher_hm.shape)} and targets {tuple(target.shape)} differ")
    annotated = (weight > 0)[..., None, None]
    mixed = torch.where(annotated, (1.0 - alpha) * target.float() + alpha * teacher_hm, teacher_hm)
    return mixed, torch.where(weight > 0, weight, torch.ones_like(weight))

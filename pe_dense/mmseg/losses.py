"""DINOv2's depth losses for MMSeg (``pe_dense.modeling.losses``): ``PESigLoss`` (AdaBins' SigLoss with DINOv2's
warm-up) and ``PEGradientLoss`` (MegaDepth's multi-scale gradient loss); DINOv2's linear depth probe trains with
``SigLoss(warm_up=True) + 0.5 * GradientLoss``."""
from __future__ import annotations

from typing import Optional

import torch
from mmseg.registry import MODELS
from torch import nn

from ..modeling.losses import gradient_loss, sig_loss


@MODELS.register_module()
class PESigLoss(nn.Module):
    """``warm_up_iters`` training calls use the warm-up form (DINOv2: 100). The count is a buffer, so it is saved in
    checkpoints and a resumed run does not warm up again."""

    def __init__(self, loss_weight: float = 1.0, max_depth: Optional[float] = None, warm_up_iters: int = 0,
                 loss_name: str = "loss_depth"):
        super().__init__()
        self.loss_weight = loss_weight
        self.max_depth = max_depth
        self.warm_up_iters = warm_up_iters
        self._loss_name = loss_name
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, pred, target, **kwargs):
        warm = self.training and int(self.calls) < self.warm_up_iters
        if self.training:
            self.calls += 1
        return self.loss_weight * sig_loss(pred, target, self.max_depth, warm_up=warm)

    @property
    def loss_name(self):
        return self._loss_name


@MODELS.register_module()
class PEGradientLoss(nn.Module):
    def __init__(self, loss_weight: float = 0.5, max_depth: Optional[float] = None, loss_name: str = "loss_grad"):
        super().__init__()
        self.loss_weight = loss_weight
        self.max_depth = max_depth
        self._loss_name = loss_name

    def forward(self, pred, target, **kwargs):
        return self.loss_weight * gradient_loss(pred, target, self.max_depth)

    @property
    def loss_name(self):
        return self._loss_name

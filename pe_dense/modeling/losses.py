"""Depth losses of DINOv2's linear depth protocol, framework-free (as AdaBins and MegaDepth define them).

``sig_loss``: the scale-invariant log loss of AdaBins, sqrt(Var(g) + 0.15 * mean(g)^2) with g = log(pred + eps) -
log(gt + eps) over the valid pixels of the whole batch (Var unbiased, as ``torch.var``); its warm-up form (the
first iterations of DINOv2's ``SigLoss(warm_up=True)``) is sqrt(0.15 * mean(g)^2).
(mmseg's own ``SiLogLoss`` is another formula: per image, sqrt(mean(g^2) - 0.5 * mean(g)^2).)

``gradient_loss``: MegaDepth's multi-scale gradient matching loss on the log-depth difference, at strides 1, 2, 4,
6 (DINOv2's ``GradientLoss``): the sum over valid pixel pairs two apart of |d(p) - d(p + 2)|, vertically and
horizontally, divided by the number of valid pixels, summed over the scales. DINOv2's code applies its slicing to
the first two dimensions of a (B, 1, H, W) tensor (batch and channel); here it is applied to H and W, as the loss
is defined.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..errors import PEDenseError

EPS = 1e-3  # DINOv2's, "avoid grad explode"


def valid_depth(gt: torch.Tensor, max_depth: Optional[float] = None) -> torch.Tensor:
    """Pixels with ground truth: depth > 0 (and <= max_depth when given)."""
    mask = gt > 0
    return mask & (gt <= max_depth) if max_depth is not None else mask


def sig_loss(pred: torch.Tensor, gt: torch.Tensor, max_depth: Optional[float] = None,
             warm_up: bool = False) -> torch.Tensor:
    mask = valid_depth(gt, max_depth)
    if not mask.any():  # no ground truth in the batch: a zero that keeps the graph
        return pred.sum() * 0
    g = torch.log(pred[mask] + EPS) - torch.log(gt[mask] + EPS)
    if warm_up:
        return torch.sqrt(0.15 * g.mean() ** 2)
    var = torch.var(g) if g.numel() > 1 else g.new_zeros(())
    return torch.sqrt(var + 0.15 * g.mean() ** 2)


def gradient_loss(pred: torch.Tensor, gt: torch.Tensor, max_depth: Optional[float] = None,
                  strides=(1, 2, 4, 6)) -> torch.Tensor:
    if pred.shape != gt.shape or pred.ndim != 4:
        raise PEDenseError(f"gradient_loss expects (B, 1, H, W) pred and gt of one shape, got {tuple(pred.shape)} "
                           f"and {tuple(gt.shape)}")
    total = pred.sum() * 0
    for s in strides:
        p, t = pred[..., ::s, ::s], gt[..., ::s, ::s]
        mask = valid_depth(t, max_depth).to(p.dtype)
        n = mask.sum()
        if n == 0:
            continue
        d = (torch.log(p + EPS) - torch.log(t + EPS)) * mask
        v = (d[..., :-2, :] - d[..., 2:, :]).abs() * mask[..., :-2, :] * mask[..., 2:, :]
        h = (d[..., :, :-2] - d[..., :, 2:]).abs() * mask[..., :, :-2] * mask[..., :, 2:]
        total = total + (v.sum() + h.sum()) / n
    return total

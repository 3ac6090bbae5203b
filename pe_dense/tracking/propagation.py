"""Label propagation on frozen features (DINO's DAVIS protocol, Caron et al. 2021), batched on tensors.

For each new frame: cosine affinities between its patches and the patches of the context (the first frame and the
last ``n_last_frames`` predictions), restricted to a ``radius``-patch square neighbourhood, keep the ``topk`` sources
per target patch, softmax of affinity / ``temperature`` over them, and average the context's soft labels. Labels
are upsampled by the patch size (bilinear), min-max normalized per object and arg-maxed at the frame's size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, List, Tuple

import torch
import torch.nn.functional as F

from ..errors import PEDenseError


@dataclass
class PropagationConfig:
    n_last_frames: int = 7
    radius: int = 12
    topk: int = 5
    temperature: float = 0.1
    short_side: int = 480


def neighbourhood(h: int, w: int, radius: int, device=None) -> torch.Tensor:
    """(h*w, h*w) bool: target patch (rows) may use source patch (cols) within ``radius`` patches in y and x."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    return ((ys[:, None] - ys[None]).abs() <= radius) & ((xs[:, None] - xs[None]).abs() <= radius)


def propagate(target: torch.Tensor, context: torch.Tensor, labels: torch.Tensor, mask, topk: int,
              temperature: float) -> torch.Tensor:
    """One step. target (q, d) and context (n, k, d) L2-normalized features; labels (n, C, k) soft labels;
    mask (q, k) bool or None. Returns (C, q)."""
    n, k, _ = context.shape
    logits = torch.einsum("qd,nkd->qnk", target, context) / temperature
    if mask is not None:
        logits = logits.masked_fill(~mask[:, None, :], float("-inf"))
    val, idx = logits.reshape(logits.shape[0], n * k).topk(topk, dim=1)  # (q, topk) over all context patches
    weight = val.softmax(dim=1)
    src = labels.permute(1, 0, 2).reshape(labels.shape[1], n * k)  # (C, n*k)
    return (src[:, idx] * weight).sum(-1)


def finalize(probs: torch.Tensor, patch: int, out_hw: Tuple[int, int]) -> torch.Tensor:
    """(C, h, w) soft labels -> (H, W) ids: upsample by the patch size, min-max per object, argmax, resize."""
    up = F.interpolate(probs[None], scale_factor=patch, mode="bilinear", align_corners=False)[0]
    lo = up.amin(dim=(1, 2), keepdim=True)
    hi = (up - lo).amax(dim=(1, 2), keepdim=True)
    keep = up.amax(dim=(1, 2), keepdim=True) > 0
    up = torch.where(keep, (up - lo) / hi.clamp_min(1e-12), up)
    ids = up.argmax(0).to(torch.uint8)
    return F.interpolate(ids[None, None].float(), size=out_hw, mode="nearest")[0, 0].to(torch.uint8)


def run_propagation(
    features: Callable[[int], torch.Tensor],
    num_frames: int,
    first_labels: torch.Tensor,
    cfg: PropagationConfig,
) -> Iterator[torch.Tensor]:
    """Yields the (C, h, w) soft labels of frames 1..num_frames-1.

    features(i) -> (h, w, d) features of frame i (any scale; normalized here); first_labels (C, h, w) one-hot.
    """
    f0 = F.normalize(features(0).flatten(0, 1).float(), dim=-1)
    h, w = first_labels.shape[-2:]
    if f0.shape[0] != h * w:
        raise PEDenseError(f"first-frame labels {h}x{w} do not match the feature grid ({f0.shape[0]} patches)")
    mask = neighbourhood(h, w, cfg.radius, f0.device) if cfg.radius > 0 else None
    lab0 = first_labels.reshape(first_labels.shape[0], -1).float().to(f0.device)
    queue: List[Tuple[torch.Tensor, torch.Tensor]] = []
    for i in range(1, num_frames):
        ft = F.normalize(features(i).flatten(0, 1).float(), dim=-1)
        ctx = torch.stack([f0] + [q[0] for q in queue])
        labs = torch.stack([lab0] + [q[1] for q in queue])
        out = propagate(ft, ctx, labs, mask, cfg.topk, cfg.temperature)
        queue.append((ft, out))
        if len(queue) > cfg.n_last_frames:
            queue.pop(0)
        yield out.reshape(-1, h, w)

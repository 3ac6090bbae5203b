"""Predictions at any size (framework-free): sliding windows whose overlaps are blended, and flip averaging.

``sliding_window(fn, x, crop, stride)`` runs ``fn`` (an image batch -> a per-pixel map at the same size) on windows
laid out as MMSeg's ``slide`` lays them (a window every ``stride`` px, the last flush with the image's end, a
window larger than the image clipped to it) and combines them: ``blend="mean"`` averages overlapping windows with
equal weights (MMSeg's way, which steps where a window's contribution starts), ``blend="ramp"`` weights each window
by ``edge_ramp``: rising from ~0 (a raised cosine) at a side that another window overlaps, 1 at the image's border
and in the middle, so overlapping windows crossfade. ``flip=True`` also runs the mirrored image and averages
``fn(x)`` with ``flip(fn(flip(x)))``. Only the output (N x K x H x W, float32) and one window live in memory.
"""
from __future__ import annotations

from typing import Callable, List, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..errors import PEDenseError

BLENDS = ("mean", "ramp")


def _rise(t: torch.Tensor) -> torch.Tensor:
    """0 -> 1 over t in [0, 1] as a raised cosine, flat at both ends: a window's weight changes least at its own
    edge, so the crossfade leaves no step where a window begins (a linear ramp does)."""
    return torch.sin(t.clamp(0, 1) * torch.pi / 2) ** 2


def edge_ramp(n: int, before: int, after: int) -> torch.Tensor:
    """1-D weights over ``n`` positions: rising over the first ``before`` (from ~0) and falling over the last
    ``after`` (raised cosine), 1 elsewhere. Two windows overlapping by L with complementary ramps sum to 1."""
    w = torch.ones(n)
    if before:
        b = min(before, n)
        w[:b] = torch.minimum(w[:b], _rise((torch.arange(b) + 0.5) / before))
    if after:
        a = min(after, n)
        w[n - a:] = torch.minimum(w[n - a:], _rise((torch.arange(a, 0, -1) - 0.5) / after))
    return w


def window_starts(size: int, crop: int, stride: int) -> List[int]:
    """MMSeg's ``slide`` layout on one axis: starts every ``stride``, the last window flush with the end."""
    grids = max(size - crop + stride - 1, 0) // stride + 1
    return sorted({max(min(i * stride + crop, size) - crop, 0) for i in range(grids)})


def window_axis(size: int, crop: int, stride: int, blend: str) -> List[Tuple[int, int, torch.Tensor]]:
    """The windows on one axis: (start, length, weights), ``edge_ramp`` weights for ``blend="ramp"``."""
    starts = window_starts(size, crop, stride)
    n = min(crop, size)
    out = []
    for i, s in enumerate(starts):
        before = starts[i - 1] + n - s if i > 0 else 0
        after = s + n - starts[i + 1] if i + 1 < len(starts) else 0
        out.append((s, n, edge_ramp(n, before, after) if blend == "ramp" else torch.ones(n)))
    return out


def check_blend(blend: str):
    if blend not in BLENDS:
        raise PEDenseError(f"test_cfg blend={blend!r}: one of {', '.join(BLENDS)} ('mean' averages overlaps as MMSeg "
                           f"does, 'ramp' crossfades them)")


def check_windows(crop: Sequence[int], stride: Sequence[int], blend: str = "mean"):
    if len(crop) != 2 or len(stride) != 2 or min(crop) <= 0 or min(stride) <= 0:
        raise PEDenseError(f"sliding windows: crop_size {tuple(crop)} and stride {tuple(stride)} must be two "
                           f"positive sizes (h, w); set test_cfg=dict(mode='slide', crop_size=(512, 512), "
                           f"stride=(341, 341))")
    check_blend(blend)


def flip_average(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """(fn(x) + flip(fn(flip(x)))) / 2, flipping left-right."""
    return (fn(x) + fn(x.flip(-1)).flip(-1)) / 2


def blend_windows(run: Callable[[int, int, int, int], List[torch.Tensor]], size: Sequence[int],
                  crop: Sequence[int], stride: Sequence[int], blend: str = "mean", progress: bool = False,
                  desc: str = "windows") -> List[torch.Tensor]:
    """The loop shared by sliding windows and tiles: ``run(y, x, h, w)`` gives the window's maps (each (..., h, w),
    on any device) and each map is accumulated over the grid of ``size`` with the windows' weights, then normalized
    in place. Returns one (..., H, W) float32 map per map ``run`` gives."""
    from tqdm import tqdm

    check_windows(crop, stride, blend)
    H, W = size
    rows, cols = window_axis(H, crop[0], stride[0], blend), window_axis(W, crop[1], stride[1], blend)
    outs, norm = None, None
    bar = tqdm(total=len(rows) * len(cols), desc=desc, unit="win", disable=not progress)
    for y, h, wy in rows:
        for x0, w, wx in cols:
            preds = run(y, x0, h, w)
            if outs is None:
                outs = [torch.zeros(*p.shape[:-2], H, W, device=p.device) for p in preds]
                norm = torch.zeros(H, W, device=preds[0].device)
            weight = (wy[:, None] * wx[None, :]).to(norm.device)
            for o, p in zip(outs, preds):
                o[..., y: y + h, x0: x0 + w] += p.float() * weight
            norm[y: y + h, x0: x0 + w] += weight
            bar.update(1)
    bar.close()
    return [o.div_(norm) for o in outs]  # in place: each output is held once


def sliding_window(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, crop: Sequence[int],
                   stride: Sequence[int], blend: str = "mean", flip: bool = False,
                   progress: bool = False) -> torch.Tensor:
    """``fn`` over windows of ``x`` (N, C, H, W), combined as ``blend`` says; returns (N, K, H, W) float32."""
    call = (lambda t: flip_average(fn, t)) if flip else fn

    def run(y, x0, h, w):
        pred = call(x[:, :, y: y + h, x0: x0 + w])
        if pred.shape[-2:] != (h, w):
            pred = F.interpolate(pred, size=(h, w), mode="bilinear", align_corners=False)
        return [pred]

    return blend_windows(run, x.shape[-2:], crop, stride, blend, progress)[0]


def border_step_ratio(pred: torch.Tensor, borders_y: Sequence[int], borders_x: Sequence[int]) -> float:
    """Mean absolute change between neighbouring pixels across the given borders (a border b lies between pixels
    b - 1 and b) over the same change between all other neighbours, of a (K, H, W) or (H, W) map. 1: no step."""
    p = pred if pred.dim() == 3 else pred[None]
    dx = (p[:, :, 1:] - p[:, :, :-1]).abs().sum(0)
    dy = (p[:, 1:, :] - p[:, :-1, :]).abs().sum(0)
    mx = torch.zeros(dx.shape[1], dtype=torch.bool)
    my = torch.zeros(dy.shape[0], dtype=torch.bool)
    mx[[b - 1 for b in borders_x if 0 < b < p.shape[2]]] = True
    my[[b - 1 for b in borders_y if 0 < b < p.shape[1]]] = True
    across = torch.cat([dx[:, mx].flatten(), dy[my, :].flatten()])
    inside = torch.cat([dx[:, ~mx].flatten(), dy[~my, :].flatten()])
    return float(across.mean() / inside.mean().clamp_min(1e-12))


def window_borders(size: int, crop: int, stride: int) -> List[int]:
    """Where windows begin or end on one axis (for ``border_step_ratio``)."""
    n = min(crop, size)
    return sorted({b for s in window_starts(size, crop, stride) for b in (s, s + n)} - {0, size})

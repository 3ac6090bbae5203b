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

from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..errors import PEDenseError

BAND_BYTES = 64 << 20  # the largest band the streams yield (window_bands, resize_bands), unless told otherwise

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
    if stride[0] > crop[0] or stride[1] > crop[1]:
        raise PEDenseError(f"sliding windows: stride {tuple(stride)} larger than crop_size {tuple(crop)} leaves "
                           f"pixels that no window sees; give a stride at most the crop (2/3 of it blends well)")
    check_blend(blend)


def flip_average(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """(fn(x) + flip(fn(flip(x)))) / 2, flipping left-right."""
    return (fn(x) + fn(x.flip(-1)).flip(-1)) / 2


def window_bands(run: Callable[[int, int, int, int], List[torch.Tensor]], size: Sequence[int],
                 crop: Sequence[int], stride: Sequence[int], blend: str = "mean", progress: bool = False,
                 desc: str = "windows", max_bytes: Optional[int] = None) -> Iterator[Tuple[int, List[torch.Tensor]]]:
    """The loop shared by sliding windows and tiles, as a stream: ``run(y, x, h, w)`` gives the window's maps (each
    (..., h, w), on any device); each map is accumulated over the grid of ``size`` with the windows' weights, and
    the rows that no later window touches are yielded as soon as their row of windows is done, in bands of at most
    ``max_bytes`` (default ``BAND_BYTES``): ``(y0, [map (..., rows, W) float32, ...])``, normalized, in order,
    covering the rows once. Held:
    one row of windows (``crop[0]`` rows of the image's width, 4 bytes per map channel) and one band, whatever the
    image's height."""
    from tqdm import tqdm

    check_windows(crop, stride, blend)
    H, W = size
    rows, cols = window_axis(H, crop[0], stride[0], blend), window_axis(W, crop[1], stride[1], blend)
    acc, norm = None, None
    bar = tqdm(total=len(rows) * len(cols), desc=desc, unit="win", disable=not progress)
    for i, (y, h, wy) in enumerate(rows):
        for x0, w, wx in cols:
            preds = run(y, x0, h, w)
            if acc is None:  # rows y .. y + h of the image
                acc = [torch.zeros(*p.shape[:-2], h, W, device=p.device) for p in preds]
                norm = torch.zeros(h, W, device=preds[0].device)
            weight = (wy[:, None] * wx[None, :]).to(norm.device)
            for a, p in zip(acc, preds):
                a[..., :, x0: x0 + w] += p.float() * weight
            norm[:, x0: x0 + w] += weight
            bar.update(1)
        done = (rows[i + 1][0] if i + 1 < len(rows) else H) - y  # rows before the next row of windows
        step = max(1, (max_bytes or BAND_BYTES) // max(1, 4 * W * sum(a[..., :1, :1].numel() for a in acc)))
        for r in range(0, done, step):
            yield y + r, [a[..., r: min(r + step, done), :] / norm[r: min(r + step, done)] for a in acc]
        for t in acc + [norm]:  # move the overlap with the next row of windows up (in place), clear the rest
            for r in range(0, h - done, done):
                t[..., r: min(r + done, h - done), :] = t[..., done + r: min(2 * done + r, h), :]
            t[..., max(h - done, 0):, :] = 0
    bar.close()


def assemble(size: Sequence[int], bands: Iterable[Tuple[int, List[torch.Tensor]]]) -> List[torch.Tensor]:
    """The whole (..., H, W) maps from ``window_bands``'s bands."""
    outs = None
    for y, maps in bands:
        if outs is None:
            outs = [torch.empty(*m.shape[:-2], size[0], m.shape[-1], device=m.device) for m in maps]
        for o, m in zip(outs, maps):
            o[..., y: y + m.shape[-2], :] = m
    return outs


def blend_windows(run: Callable[[int, int, int, int], List[torch.Tensor]], size: Sequence[int],
                  crop: Sequence[int], stride: Sequence[int], blend: str = "mean", progress: bool = False,
                  desc: str = "windows") -> List[torch.Tensor]:
    """``window_bands`` assembled: one (..., H, W) float32 map per map ``run`` gives."""
    return assemble(size, window_bands(run, size, crop, stride, blend, progress, desc))


def sliding_bands(fn: Callable[[torch.Tensor], torch.Tensor], crop_of: Callable[[int, int, int, int], torch.Tensor],
                  size: Sequence[int], crop: Sequence[int], stride: Sequence[int], blend: str = "mean",
                  flip: bool = False, progress: bool = False) -> Iterator[Tuple[int, torch.Tensor]]:
    """``fn`` over the windows ``crop_of(y, x, h, w)`` of an image of ``size`` (made only when needed, e.g.
    normalized from the 8-bit image), combined as ``blend`` says: ``(y0, band (N, K, rows, W) float32)`` in order."""
    call = (lambda t: flip_average(fn, t)) if flip else fn

    def run(y, x0, h, w):
        pred = call(crop_of(y, x0, h, w))
        if pred.shape[-2:] != (h, w):
            pred = F.interpolate(pred, size=(h, w), mode="bilinear", align_corners=False)
        return [pred]

    for y, (band,) in window_bands(run, size, crop, stride, blend, progress):
        yield y, band


def sliding_window(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, crop: Sequence[int],
                   stride: Sequence[int], blend: str = "mean", flip: bool = False,
                   progress: bool = False) -> torch.Tensor:
    """``fn`` over windows of ``x`` (N, C, H, W), combined as ``blend`` says; returns (N, K, H, W) float32."""
    bands = sliding_bands(fn, lambda y, x0, h, w: x[:, :, y: y + h, x0: x0 + w], x.shape[-2:], crop, stride,
                          blend, flip, progress)
    return assemble(x.shape[-2:], ((y, [b]) for y, b in bands))[0]


def zip_bands(streams: Sequence[Iterable[Tuple[int, torch.Tensor]]]) -> Iterator[Tuple[int, List[torch.Tensor]]]:
    """Several streams of bands over the same rows (each in order, cut anywhere), cut to common bands:
    ``(y0, [each stream's rows y0 .. y1])``; holds one band of each stream."""
    iters = [iter(s) for s in streams]
    held = [(0, None)] * len(iters)
    y = 0
    while True:
        for i, it in enumerate(iters):
            while held[i][1] is None or held[i][0] + held[i][1].shape[-2] <= y:
                nxt = next(it, None)
                if nxt is None:
                    return
                held[i] = nxt
        end = min(y0 + b.shape[-2] for y0, b in held)
        yield y, [b[..., y - y0: end - y0, :] for y0, b in held]
        y = end


def _linear_taps(n_in: int, n_out: int, align_corners: bool):
    """PyTorch's bilinear taps on one axis: for each output position the two source positions and their weights."""
    dst = torch.arange(n_out, dtype=torch.float32)
    if align_corners:
        src = dst * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    else:
        src = ((dst + 0.5) * (n_in / n_out) - 0.5).clamp_min(0)
    i0 = src.long().clamp(max=n_in - 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    w1 = src - i0
    return i0, i1, 1 - w1, w1


def resize_bands(bands: Iterable[Tuple[int, torch.Tensor]], size_in: Sequence[int], size_out: Sequence[int],
                 align_corners: bool = False, max_bytes: Optional[int] = None) -> Iterator[Tuple[int, torch.Tensor]]:
    """Bilinear resizing (``F.interpolate``'s, up to float rounding) of a map that arrives as bands of rows
    (``(y0, (N, K, rows, W_in))`` in order), as bands of the output's rows of at most ``max_bytes`` (default
    ``BAND_BYTES``): only the source
    rows still needed and one output band are held."""
    (hi, wi), (ho, wo) = size_in, size_out
    if (hi, wi) == (ho, wo):
        yield from bands
        return
    r0, r1, rw0, rw1 = _linear_taps(hi, ho, align_corners)
    c0, c1, cw0, cw1 = _linear_taps(wi, wo, align_corners)
    held, first, nxt = None, 0, 0  # source rows first .. first + len(held); next output row
    for y, band in bands:
        held = band if held is None else torch.cat([held, band], dim=-2)
        avail = y + band.shape[-2]
        step = max(1, (max_bytes or BAND_BYTES) // max(1, band[..., :1, :1].numel() * wo * 4 * 3))
        while nxt < ho and int(r1[nxt]) < avail:
            end = nxt + 1
            while end < ho and end - nxt < step and int(r1[end]) < avail:
                end += 1
            dev = held.device
            a = held.index_select(-2, (r0[nxt:end] - first).to(dev)).float()
            b = held.index_select(-2, (r1[nxt:end] - first).to(dev)).float()
            rows = a * rw0[nxt:end, None].to(dev) + b * rw1[nxt:end, None].to(dev)
            del a, b
            out = rows.index_select(-1, c0.to(dev)) * cw0.to(dev) + rows.index_select(-1, c1.to(dev)) * cw1.to(dev)
            yield nxt, out
            nxt = end
        if nxt < ho:  # drop the source rows no later output row reads
            keep = min(int(r0[nxt]), avail) - first
            held, first = held[..., keep:, :], first + keep
    if nxt != ho:
        raise PEDenseError(f"resize_bands: the bands covered {first + (held.shape[-2] if held is not None else 0)} "
                           f"of {hi} rows")


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

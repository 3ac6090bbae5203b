"""2-D axial rotary position embedding (RoPE) as the released PE vision tower uses it.

Facts (``core/vision_encoder/rope.py`` of facebookresearch/perception_models):
- head_dim / 4 frequencies per axis, ``1 / theta ** (arange(0, d, 2) / d)`` with ``d = head_dim / 2``, theta 10000;
- each frequency repeated twice (interleaved rotation pairs ``(x0, x1), (x2, x3), ...``);
- x (column) half first, then y (row) half;
- positions are the integer grid, starting at 1 when the model has a class token (which stays unrotated).

Two ways to meet a grid other than the pretraining one:
- ``"extrapolate"`` (PE): integer positions whatever the grid size;
- ``"interpolate"`` (timm, and the released detection recipe's global blocks): positions scaled by
  ``ref / size`` so the grid spans the pretraining grid ``ref``.
RoPE holds no weights.
"""
from __future__ import annotations

from typing import Tuple

import torch

from ..errors import PEDenseError

ROPE_MODES = ("extrapolate", "interpolate")


def rope_frequencies(head_dim: int, theta: float = 10000.0, device=None) -> torch.Tensor:
    if head_dim % 4:
        raise PEDenseError(f"2-D RoPE needs head_dim divisible by 4, got {head_dim}")
    d = head_dim // 2
    return 1.0 / (theta ** (torch.arange(0, d, 2, device=device, dtype=torch.float32)[: d // 2] / d))


def axis_positions(size: int, mode: str, ref: int, offset: float, device=None) -> torch.Tensor:
    t = torch.arange(size, device=device, dtype=torch.float32) + offset
    if mode == "interpolate":
        t = t * (ref / size)
    elif mode != "extrapolate":
        raise PEDenseError(f"rope must be one of {ROPE_MODES}, got {mode!r}")
    return t


def rope_angles(
    grid: Tuple[int, int],
    head_dim: int,
    mode: str = "extrapolate",
    ref: int = 32,
    offset: float = 0.0,
    num_prefix: int = 0,
    device=None,
) -> torch.Tensor:
    """Rotation angles (num_prefix + h * w, head_dim / 2), one per rotated pair, row-major over (h, w).

    Prefix (class) tokens get angle 0 (not rotated).
    """
    h, w = grid
    freqs = rope_frequencies(head_dim, device=device)
    fy = axis_positions(h, mode, ref, offset, device)[:, None] * freqs  # (h, f)
    fx = axis_positions(w, mode, ref, offset, device)[:, None] * freqs  # (w, f)
    ang = torch.cat(
        [fx[None, :, :].expand(h, w, -1), fy[:, None, :].expand(h, w, -1)], dim=-1
    ).reshape(h * w, -1)
    if num_prefix:
        ang = torch.cat([ang.new_zeros(num_prefix, ang.shape[-1]), ang], dim=0)
    return ang


def rope_table(grid: Tuple[int, int], head_dim: int, mode: str = "extrapolate", ref: int = 32,
               offset: float = 0.0, num_prefix: int = 0, device=None) -> torch.Tensor:
    """The rotations as (cos, sin) pairs, (num_prefix + h * w, head_dim / 2, 2) fp32: a real tensor (compilers
    and exporters handle it), viewed as the unit complex numbers ``exp(i * angle)`` where that is faster."""
    ang = rope_angles(grid, head_dim, mode, ref, offset, num_prefix, device)
    return torch.stack([ang.cos(), ang.sin()], dim=-1)


def apply_rope(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rotate the interleaved pairs ``(x0, x1), (x2, x3), ...`` of the last dim: x (..., N, D), table (N, D / 2, 2),
    in fp32 whatever x's dtype (as the released code rotates in fp32), returned in x's dtype. Eager: one complex
    multiply (``x0 + i x1`` times ``cos + i sin``; the released ``x * cos + rotate_half(x) * sin`` without its
    intermediate tensors, 7x faster on CPU). Under ``torch.compile``: the same arithmetic on real numbers
    (x0 cos - x1 sin, x0 sin + x1 cos), which inductor fuses into one kernel (it has no complex code generation)."""
    pairs = x.float().unflatten(-1, (-1, 2))
    if torch.compiler.is_compiling():
        x0, x1 = pairs.unbind(-1)
        cos, sin = table.unbind(-1)
        out = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1)
    else:
        out = torch.view_as_real(torch.view_as_complex(pairs.contiguous()) * torch.view_as_complex(table))
    return out.flatten(-2).to(x.dtype)

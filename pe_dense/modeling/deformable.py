"""Multi-scale deformable attention (Deformable-DETR, Zhu et al. 2021), as DETA uses it.

``ms_deform_attn`` samples each head's value maps at the given locations (bilinear, zeros outside, ``grid_sample`` with
``align_corners=False``: location (x, y) in [0, 1] is pixel (x W - 0.5, y H - 0.5)) and sums them with the attention
weights. On CPU (and on CUDA without mmcv) it is the pure-PyTorch computation of Deformable-DETR's
``ms_deform_attn_core_pytorch`` / mmcv's ``multi_scale_deformable_attn_pytorch``; on CUDA, when mmcv's ops are
installed, mmcv's ``MultiScaleDeformableAttnFunction`` (the CUDA kernel Deformable-DETR and the released DETA_pe
build) computes the same sums in less memory.

``MSDeformAttn`` is the module around it, with Deformable-DETR's parameter names (``sampling_offsets``,
``attention_weights``, ``value_proj``, ``output_proj``) and initialization, so that DETA checkpoints load unchanged.
"""
import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PEDenseError

__all__ = ["ms_deform_attn", "MSDeformAttn", "level_start_index", "flatten_levels"]

_MMCV = {}


def _mmcv_function():
    """mmcv's CUDA op, or None (not installed, or built without CUDA)."""
    if "f" not in _MMCV:
        try:
            from mmcv.ops.multi_scale_deform_attn import MultiScaleDeformableAttnFunction
            _MMCV["f"] = MultiScaleDeformableAttnFunction
        except Exception:  # noqa: BLE001 - any failure to import means: no op, the PyTorch path
            _MMCV["f"] = None
    return _MMCV["f"]


def level_start_index(shapes: torch.Tensor) -> torch.Tensor:
    """(L, 2) level shapes (H, W) -> (L,) offsets of each level in the flattened sequence."""
    areas = shapes.prod(1)
    return torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])


def ms_deform_attn(value: torch.Tensor, shapes: torch.Tensor, locations: torch.Tensor, weights: torch.Tensor,
                   use_op: Optional[bool] = None, im2col_step: int = 64) -> torch.Tensor:
    """``value`` (N, S, M, D): M heads of D channels over the flattened levels (S = sum of H_l W_l); ``shapes`` (L, 2)
    int64 (H_l, W_l); ``locations`` (N, Q, M, L, P, 2) in [0, 1] (x, y); ``weights`` (N, Q, M, L, P).
    Returns (N, Q, M D). ``use_op``: None = mmcv's CUDA op when the tensors are on CUDA and mmcv has it."""
    N, S, M, D = value.shape
    _, Q, _, L, P, _ = locations.shape
    if shapes.shape != (L, 2) or int(shapes.prod(1).sum()) != S:
        raise PEDenseError(f"deformable attention: the level shapes {shapes.tolist()} make "
                           f"{int(shapes.prod(1).sum())} tokens over {shapes.shape[0]} levels, the value has {S} over "
                           f"{L} levels (the locations' 4th dimension)")
    op = _mmcv_function() if (use_op or (use_op is None and value.is_cuda)) else None
    if use_op and (op is None or not value.is_cuda):
        raise PEDenseError("deformable attention: use_op=True needs CUDA tensors and mmcv's "
                           "MultiScaleDeformableAttnFunction (bash scripts/setup.sh builds mmcv with its ops); "
                           "use_op=None takes the PyTorch path where the op is not there")
    if op is not None and value.is_cuda:
        return op.apply(value, shapes, level_start_index(shapes), locations, weights, im2col_step)
    grids = 2 * locations - 1  # grid_sample's [-1, 1]
    sampled = []
    for lvl, v in enumerate(value.split([int(h) * int(w) for h, w in shapes.tolist()], dim=1)):
        h, w = (int(s) for s in shapes[lvl])
        v = v.flatten(2).transpose(1, 2).reshape(N * M, D, h, w)
        g = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)  # (N M, Q, P, 2)
        sampled.append(F.grid_sample(v, g.to(v.dtype), mode="bilinear", padding_mode="zeros", align_corners=False))
    w = weights.transpose(1, 2).reshape(N * M, 1, Q, L * P)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * w.to(value.dtype)).sum(-1)  # (N M, D, Q)
    return out.view(N, M * D, Q).transpose(1, 2).contiguous()


class MSDeformAttn(nn.Module):
    """Deformable-DETR's ``MSDeformAttn``: each query attends to ``n_points`` sampled points per head and level,
    around its reference point (N, Q, L, 2) or inside its reference box (N, Q, L, 4: cx, cy, w, h)."""

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4):
        super().__init__()
        if d_model % n_heads:
            raise PEDenseError(f"MSDeformAttn: d_model {d_model} is not divisible by n_heads {n_heads}")
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self):
        """Deformable-DETR's: offsets start on rays at the heads' angles, point i at distance i + 1 (in units of the
        level's cells, or of the box's 1 / (2 n_points)); uniform attention weights; Xavier projections."""
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(self.n_heads, 1, 1, 2)
        grid = grid.repeat(1, self.n_levels, self.n_points, 1)
        for i in range(self.n_points):
            grid[:, :, i, :] *= i + 1
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def sampling(self, query: torch.Tensor, reference: torch.Tensor,
                 shapes: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The sampling locations (N, Q, M, L, P, 2) and softmaxed weights (N, Q, M, L, P) of ``query``."""
        N, Q, _ = query.shape
        M, L, P = self.n_heads, self.n_levels, self.n_points
        offsets = self.sampling_offsets(query).view(N, Q, M, L, P, 2)
        weights = F.softmax(self.attention_weights(query).view(N, Q, M, L * P), -1).view(N, Q, M, L, P)
        if reference.shape[-1] == 2:
            norm = torch.stack([shapes[..., 1], shapes[..., 0]], -1).to(offsets.dtype)  # (W, H): offsets in cells
            locations = reference[:, :, None, :, None, :] + offsets / norm[None, None, None, :, None, :]
        elif reference.shape[-1] == 4:
            locations = (reference[:, :, None, :, None, :2]
                         + offsets / P * reference[:, :, None, :, None, 2:] * 0.5)
        else:
            raise PEDenseError(f"MSDeformAttn: reference points end in 2 (x, y) or 4 (cx, cy, w, h) values, got "
                               f"{reference.shape[-1]}")
        return locations, weights

    def forward(self, query: torch.Tensor, reference: torch.Tensor, value_in: torch.Tensor, shapes: torch.Tensor,
                padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``query`` (N, Q, C); ``reference`` (N, Q, L, 2 or 4) in [0, 1] of the padded image; ``value_in`` (N, S, C)
        the flattened levels; ``shapes`` (L, 2) int64; ``padding_mask`` (N, S) True where a token is padding."""
        N, S, C = value_in.shape
        value = self.value_proj(value_in)
        if padding_mask is not None:
            value = value.masked_fill(padding_mask[..., None], 0.0)
        value = value.view(N, S, self.n_heads, C // self.n_heads)
        locations, weights = self.sampling(query, reference, shapes)
        return self.output_proj(ms_deform_attn(value, shapes, locations, weights))

    def extra_repr(self):
        return f"d_model={self.d_model}, levels={self.n_levels}, heads={self.n_heads}, points={self.n_points}"


def flatten_levels(maps: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """(N, C, H_l, W_l) maps -> (N, S, C) tokens and their (L, 2) int64 shapes."""
    shapes = torch.as_tensor([m.shape[-2:] for m in maps], dtype=torch.long, device=maps[0].device)
    return torch.cat([m.flatten(2).transpose(1, 2) for m in maps], 1), shapes

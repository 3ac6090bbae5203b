"""ViTDet's simple feature pyramid (Li et al. 2022), framework-free.

From one ViT map at stride 16: scale 4 (two 2x2 transposed convs with LN + GELU between), 2 (one transposed
conv), 1 (identity), 0.5 (2x2 max pool); each followed by a 1x1 and a 3x3 conv with LayerNorm-2d; optional p6 by
stride-2 max pooling of the coarsest level (Detectron2's ``LastLevelMaxPool``). Returns ``{"p2": ..., "p6": ...}``
with strides 4..64.

A patch-14 tower gives a stride-14 map: it is resized (bilinear) to the stride-16 grid of the input first, so the
pyramid's strides are exactly 4, 8, 16, 32, 64 for any patch size. (The released detection recipe instead converts
the patch embedding to 16 at load time: ``create_model(..., patch_size=16)``; then no resize happens.)
"""
from __future__ import annotations

import math
from typing import Dict, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PEDenseError
from .vit import ceil_div, exporting

BASE_STRIDE = 16


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a (B, C, H, W) map (Detectron2's ``LN`` norm, eps 1e-6)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x):
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.weight.shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def _norm(norm: str, c: int) -> nn.Module:
    if norm == "LN":
        return LayerNorm2d(c)
    if norm in ("", None):
        return nn.Identity()
    if norm == "BN":
        return nn.BatchNorm2d(c)
    raise PEDenseError(f"norm must be 'LN', 'BN' or '', got {norm!r}")


class ConvNorm(nn.Sequential):
    def __init__(self, cin, cout, k, norm):
        super().__init__(nn.Conv2d(cin, cout, k, padding=k // 2, bias=norm in ("", None)), _norm(norm, cout))


class SimpleFeaturePyramid(nn.Module):
    """Args:
        net: a ``PEViT`` (any module with ``width`` and a list-of-maps ``forward``).
        in_index: which of ``net``'s outputs feeds the pyramid.
        out_channels: channels of every level (256).
        scale_factors: (4, 2, 1, 0.5) gives p2..p5.
        top_block: add p6 by max pooling the coarsest level.
        norm: "LN" (ViTDet), "BN" or "".
        square_pad: pad inputs (bottom/right, zeros) to this square size first (0: off).
    """

    def __init__(
        self,
        net: nn.Module,
        in_index: int = -1,
        out_channels: int = 256,
        scale_factors: Sequence[float] = (4.0, 2.0, 1.0, 0.5),
        top_block: bool = True,
        norm: str = "LN",
        square_pad: int = 0,
    ):
        super().__init__()
        self.net = net
        self.in_index = in_index
        self.square_pad = square_pad
        self.top_block = top_block
        dim = net.width
        self.stages = nn.ModuleList()
        self.strides: Dict[str, int] = {}
        for s in scale_factors:
            if s == 4.0:
                layers = [nn.ConvTranspose2d(dim, dim // 2, 2, 2), _norm(norm, dim // 2), nn.GELU(),
                          nn.ConvTranspose2d(dim // 2, dim // 4, 2, 2)]
                c = dim // 4
            elif s == 2.0:
                layers, c = [nn.ConvTranspose2d(dim, dim // 2, 2, 2)], dim // 2
            elif s == 1.0:
                layers, c = [], dim
            elif s == 0.5:
                layers, c = [nn.MaxPool2d(2, 2)], dim
            else:
                raise PEDenseError(f"scale factor {s} not supported (use 4, 2, 1, 0.5)")
            layers += [ConvNorm(c, out_channels, 1, norm), ConvNorm(out_channels, out_channels, 3, norm)]
            self.stages.append(nn.Sequential(*layers))
            stride = int(BASE_STRIDE / s)
            self.strides[f"p{int(math.log2(stride))}"] = stride
        if top_block:
            last = max(self.strides.values())
            self.strides[f"p{int(math.log2(last)) + 1}"] = last * 2
        self.out_channels = out_channels
        self.size_divisibility = max(self.strides.values())

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        H, W = x.shape[-2:]
        if self.square_pad:
            if H > self.square_pad or W > self.square_pad:
                raise PEDenseError(f"input {H}x{W} is larger than square_pad={self.square_pad}")
            x = F.pad(x, (0, self.square_pad - W, 0, self.square_pad - H))
            H = W = self.square_pad
        return self.forward_features(self.net(x)[self.in_index], (H, W))

    def forward_features(self, feat: torch.Tensor, image_size: Tuple[int, int]) -> Dict[str, torch.Tensor]:
        """The pyramid of a ViT map ``feat`` computed on an image of ``image_size``."""
        H, W = image_size
        grid = (ceil_div(H, BASE_STRIDE), ceil_div(W, BASE_STRIDE))
        if exporting() or tuple(feat.shape[-2:]) != grid:  # patch 14 (or another non-16 patch): onto the stride-16 grid
            feat = F.interpolate(feat, size=grid, mode="bilinear", align_corners=False)
        outs = [stage(feat) for stage in self.stages]
        if self.top_block:
            outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
        return dict(zip(self.strides, outs))

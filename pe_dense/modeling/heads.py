"""Dense heads on PE taps, framework-free: DPT (depth), linear bins (depth), BN + linear (segmentation probe).

DPT (Ranftl et al. 2021, as Depth Anything / DINOv2 use it): four taps, each projected (1x1) and reassembled to
x4, x2, x1, x0.5 of the patch grid, 3x3 convs to a common width, then fusion blocks from the coarsest
(residual conv units, add, x2 upsampling), and a small output head. The linear heads follow DINOv2's dense
protocol: a 1x1 conv on the (concatenated) taps, after batch norm for segmentation; the depth variant
(DINOv2's released ``BNHead``: no norm, the class token concatenated to every patch, x4 bilinear upsampling)
classifies into 256 bins spaced linearly over [min_depth, max_depth] and outputs the expectation under AdaBins'
"linear" normalization (relu + 0.1, divided by the sum).
"""
from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PEDenseError


def _resize_like(xs: Sequence[torch.Tensor], ref: torch.Tensor) -> List[torch.Tensor]:
    return [x if x.shape[-2:] == ref.shape[-2:] else
            F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False) for x in xs]


class ResidualConvUnit(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """DPT's fusion block; the coarsest one has no skip input and so no ``res1`` (a parameter that never gets a
    gradient would stop DDP: "Expected to have finished reduction in the prior iteration")."""

    def __init__(self, c: int, skip: bool = True):
        super().__init__()
        if skip:
            self.res1 = ResidualConvUnit(c)
        self.res2 = ResidualConvUnit(c)
        self.project = nn.Conv2d(c, c, 1)

    def forward(self, x, skip=None):
        if skip is not None:
            x = _resize_like([x], skip)[0] + self.res1(skip)
        x = self.res2(x)
        return self.project(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True))


class DPTHead(nn.Module):
    """Args:
        in_channels: channels of the four taps (the ViT width, four times).
        post_channels: channels after the 1x1 projection of each tap (DPT-B: 96, 192, 384, 768).
        channels: width of the fusion path (256).
        min_depth, max_depth: output range (``min + sigmoid(x) * (max - min)``).
    Returns a (B, 1, 16h, 16w) map for taps of (h, w): 4x the finest reassembled level (x4), fused and upsampled.
    """

    def __init__(self, in_channels: Sequence[int], post_channels: Sequence[int] = (96, 192, 384, 768),
                 channels: int = 256, min_depth: float = 1e-3, max_depth: float = 10.0):
        super().__init__()
        if len(in_channels) != 4 or len(post_channels) != 4:
            raise PEDenseError("DPTHead takes exactly four taps (e.g. out_indices=[2, 5, 8, 11])")
        self.min_depth, self.max_depth = min_depth, max_depth
        self.project = nn.ModuleList(nn.Conv2d(c, p, 1) for c, p in zip(in_channels, post_channels))
        p = post_channels
        self.resize = nn.ModuleList([
            nn.ConvTranspose2d(p[0], p[0], 4, 4),  # x4
            nn.ConvTranspose2d(p[1], p[1], 2, 2),  # x2
            nn.Identity(),                          # x1
            nn.Conv2d(p[3], p[3], 3, stride=2, padding=1),  # x0.5
        ])
        self.layer_rn = nn.ModuleList(nn.Conv2d(c, channels, 3, padding=1, bias=False) for c in post_channels)
        self.fusion = nn.ModuleList(FusionBlock(channels, skip=i < 3) for i in range(4))
        self.head = nn.Sequential(
            nn.Conv2d(channels, channels // 2, 3, padding=1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            nn.Conv2d(channels // 2, 32, 3, padding=1), nn.ReLU(True), nn.Conv2d(32, 1, 1),
        )

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        xs = [rn(rs(pr(f))) for f, pr, rs, rn in zip(feats, self.project, self.resize, self.layer_rn)]
        x = self.fusion[3](xs[3])
        for i in (2, 1, 0):
            x = self.fusion[i](x, xs[i])
        out = self.head(x)
        return self.min_depth + torch.sigmoid(out) * (self.max_depth - self.min_depth)


class LinearBinsHead(nn.Module):
    """DINOv2's linear depth probe: a 1x1 conv to ``n_bins`` logits on the concatenated taps (each with its class
    token broadcast over the patches when ``class_token``; taps are then ``(map, token)`` pairs), upsampled
    ``upsample`` x first; the depth is the probability-weighted mean of bin centres spaced linearly over
    [min_depth, max_depth]. ``norm``: ``"linear"`` (DINOv2/AdaBins: relu(logits) + 0.1, normalized by the sum)
    or ``"softmax"``; ``bn``: batch norm before the conv (DINOv2's released depth head has none)."""

    NORMS = ("linear", "softmax")

    def __init__(self, in_channels: Sequence[int], n_bins: int = 256, min_depth: float = 1e-3,
                 max_depth: float = 10.0, upsample: int = 4, class_token: bool = False, norm: str = "linear",
                 bn: bool = False):
        super().__init__()
        if norm not in self.NORMS:
            raise PEDenseError(f"norm must be one of {self.NORMS}, got {norm!r}")
        if not 0 < min_depth < max_depth:
            raise PEDenseError(f"need 0 < min_depth < max_depth, got {min_depth}, {max_depth}")
        c = sum(in_channels) * (2 if class_token else 1)
        self.class_token = class_token
        self.norm = norm
        self.bn = nn.BatchNorm2d(c) if bn else nn.Identity()
        self.conv = nn.Conv2d(c, n_bins, 1)
        self.upsample = upsample
        self.register_buffer("centers", torch.linspace(min_depth, max_depth, n_bins), persistent=False)

    def _with_tokens(self, feats) -> List[torch.Tensor]:
        pairs = [isinstance(f, (tuple, list)) for f in feats]
        if self.class_token and not all(pairs):
            raise PEDenseError("class_token=True: each tap must be a (map, class token) pair; build the tower with "
                               "return_class_token=True")
        if not self.class_token and any(pairs):
            raise PEDenseError("the taps carry class tokens but the head was built with class_token=False")
        if not self.class_token:
            return list(feats)
        return [torch.cat([x, t[:, :, None, None].expand_as(x)], dim=1) for x, t in feats]

    def forward(self, feats) -> torch.Tensor:
        feats = self._with_tokens(feats)
        x = torch.cat(_resize_like(feats, feats[0]), dim=1)
        if self.upsample > 1:
            x = F.interpolate(x, scale_factor=self.upsample, mode="bilinear", align_corners=False)
        logits = self.conv(self.bn(x))
        if self.norm == "linear":
            p = torch.relu(logits) + 0.1
            p = p / p.sum(dim=1, keepdim=True)
        else:
            p = logits.softmax(dim=1)
        return (p * self.centers.view(1, -1, 1, 1).to(p.dtype)).sum(1, keepdim=True)


class LinearSegHead(nn.Module):
    """DINOv2's linear segmentation probe: BN + 1x1 conv on the concatenated taps ("+ms": several taps)."""

    def __init__(self, in_channels: Sequence[int], num_classes: int, dropout: float = 0.0):
        super().__init__()
        c = sum(in_channels)
        self.bn = nn.BatchNorm2d(c)
        self.dropout = nn.Dropout2d(dropout) if dropout else nn.Identity()
        self.conv = nn.Conv2d(c, num_classes, 1)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.conv(self.dropout(self.bn(torch.cat(_resize_like(feats, feats[0]), dim=1))))

"""MMSeg decode heads wrapping ``pe_dense.modeling.heads``: DPT and linear-bins depth, BN + linear segmentation."""
from __future__ import annotations

from typing import Sequence

import torch
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.utils import resize
from mmseg.registry import MODELS

from ..modeling.heads import DPTHead, LinearBinsHead, LinearSegHead


class _DepthHead(BaseDecodeHead):
    """Depth heads for mmseg's ``DepthEstimator``: ``forward`` returns (B, 1, H, W) metres; losses (e.g.
    ``SiLogLoss``) compare it with ``gt_depth_map`` at the label's size."""

    def __init__(self, in_channels, loss_decode=dict(type="SiLogLoss"), **kwargs):
        kwargs.setdefault("channels", 1)
        kwargs.setdefault("threshold", 0.5)  # unused: depth is regressed
        kwargs.setdefault("init_cfg", None)
        kwargs.setdefault("input_transform", "multiple_select")
        kwargs.setdefault("in_index", list(range(len(in_channels))))
        super().__init__(in_channels, num_classes=1, out_channels=1, loss_decode=loss_decode, **kwargs)
        del self.conv_seg  # the wrapped head makes its own output

    def _stack_batch_gt(self, batch_data_samples):
        return torch.stack([s.gt_depth_map.data for s in batch_data_samples], dim=0)

    def loss_by_feat(self, pred, batch_data_samples) -> dict:
        gt = self._stack_batch_gt(batch_data_samples)
        pred = resize(pred, size=gt.shape[2:], mode="bilinear", align_corners=self.align_corners)
        losses = self.loss_decode if isinstance(self.loss_decode, torch.nn.ModuleList) else [self.loss_decode]
        out = {}
        for loss in losses:
            out[loss.loss_name] = out.get(loss.loss_name, 0) + loss(pred, gt)
        return out

    def forward(self, inputs):
        return self.head(self._transform_inputs(inputs))


@MODELS.register_module()
class PEDPTHead(_DepthHead):
    def __init__(self, in_channels: Sequence[int], post_channels=(96, 192, 384, 768), fusion_channels: int = 256,
                 min_depth: float = 1e-3, max_depth: float = 10.0, **kwargs):
        super().__init__(in_channels, **kwargs)
        self.head = DPTHead(self.in_channels, post_channels, fusion_channels, min_depth, max_depth)


@MODELS.register_module()
class PELinearBinsHead(_DepthHead):
    """DINOv2's linear depth probe (``pe_dense.modeling.heads.LinearBinsHead``). ``class_token=True`` takes the
    backbone's (map, class token) taps (``PETower(return_class_token=True)``)."""

    def __init__(self, in_channels: Sequence[int], n_bins: int = 256, min_depth: float = 1e-3,
                 max_depth: float = 10.0, upsample: int = 4, class_token: bool = False, norm: str = "linear",
                 bn: bool = False, **kwargs):
        super().__init__(in_channels, **kwargs)
        self.head = LinearBinsHead(self.in_channels, n_bins, min_depth, max_depth, upsample, class_token, norm, bn)


@MODELS.register_module()
class PELinearHead(BaseDecodeHead):
    """DINOv2-style linear probe: BN + 1x1 conv on the selected taps, concatenated (``in_index``)."""

    def __init__(self, in_channels: Sequence[int], num_classes: int, **kwargs):
        kwargs.setdefault("channels", sum(in_channels))
        kwargs.setdefault("init_cfg", None)
        kwargs.setdefault("input_transform", "resize_concat")
        kwargs.setdefault("in_index", list(range(len(in_channels))))
        super().__init__(in_channels, num_classes=num_classes, **kwargs)
        del self.conv_seg
        self.head = LinearSegHead([self.channels], num_classes, self.dropout_ratio)

    def forward(self, inputs):
        return self.head([self._transform_inputs(inputs)])

"""``PEViTDetBackbone``: ``pe_dense.modeling.SimpleFeaturePyramid`` over ``PEViT``, as a Detectron2 ``Backbone``.

``size_divisibility`` and ``padding_constraints`` are spelled the way ``ImageList.from_tensors`` reads them
(Detectron2's own ``SimpleFeaturePyramid.padding_constraints`` misspells ``size_divisiblity``, so its divisibility
is only honoured through the positional argument); inputs are padded to ``square_pad`` and to the coarsest stride.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone

from ..errors import PEDenseError
from ..factory import create_model
from ..modeling import SimpleFeaturePyramid


class PEViTDetBackbone(Backbone):
    """Args:
        model_name: a released tower (``pe_dense.list_models()``).
        pretrained: weights for ``pe_dense.load_checkpoint`` (path, hub id); usually left None and loaded by
            ``tools/train_net.py`` from ``train.init_checkpoint`` instead.
        vit: ``create_model`` overrides (window_size, global_blocks, pos_embed, rope, drop_path_rate,
            act_checkpoint, patch_size, ...).
        out_channels, scale_factors, top_block, norm, square_pad: the pyramid.
    """

    def __init__(
        self,
        model_name: str = "PE-Spatial-B16-512",
        pretrained: Optional[str] = None,
        vit: Optional[Dict] = None,
        out_channels: int = 256,
        scale_factors: Sequence[float] = (4.0, 2.0, 1.0, 0.5),
        top_block: bool = True,
        norm: str = "LN",
        square_pad: int = 1024,
    ):
        super().__init__()
        net = create_model(model_name, pretrained=pretrained, **dict(vit or {}))
        self.fpn = SimpleFeaturePyramid(net, -1, out_channels, tuple(scale_factors), top_block, norm, 0)
        self._square_pad = square_pad
        self._out_features = list(self.fpn.strides)
        self._out_feature_strides = dict(self.fpn.strides)
        self._out_feature_channels = {k: out_channels for k in self._out_features}

    @property
    def net(self):
        return self.fpn.net

    @property
    def size_divisibility(self) -> int:
        return self.fpn.size_divisibility

    @property
    def padding_constraints(self) -> Dict[str, int]:
        return {"size_divisibility": self.size_divisibility, "square_size": self._square_pad}

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        H, W = x.shape[-2:]
        d = self.size_divisibility
        if H % d or W % d:
            raise PEDenseError(
                f"PEViTDetBackbone input {H}x{W} is not a multiple of the pyramid's stride {d}: pad images with "
                f"ImageList.from_tensors(images, backbone.size_divisibility, "
                f"padding_constraints=backbone.padding_constraints) (GeneralizedRCNN does this)")
        return self.fpn(x)

    def output_shape(self):
        return {k: ShapeSpec(channels=self._out_feature_channels[k], stride=self._out_feature_strides[k])
                for k in self._out_features}


PEBackbone = PEViTDetBackbone  # its former name: configs written with it keep working


def add_pe_config(cfg):
    """yacs keys for ``MODEL.BACKBONE.NAME = "build_pe_backbone"``."""
    from detectron2.config import CfgNode as CN

    cfg.MODEL.PE = CN()
    cfg.MODEL.PE.NAME = "PE-Spatial-B16-512"
    cfg.MODEL.PE.WEIGHTS = ""
    cfg.MODEL.PE.PATCH_SIZE = 16
    cfg.MODEL.PE.WINDOW_SIZE = 16
    cfg.MODEL.PE.GLOBAL_BLOCKS = [2, 5, 8, 11]
    cfg.MODEL.PE.POS_EMBED = "tile"
    cfg.MODEL.PE.ROPE = "interpolate"  # as the LazyConfigs and the released recipe
    cfg.MODEL.PE.DROP_PATH_RATE = 0.1
    cfg.MODEL.PE.ACT_CHECKPOINT = False
    cfg.MODEL.PE.OUT_CHANNELS = 256
    cfg.MODEL.PE.SQUARE_PAD = 1024
    return cfg


@BACKBONE_REGISTRY.register()
def build_pe_backbone(cfg, input_shape=None):
    pe = cfg.MODEL.PE
    return PEViTDetBackbone(
        pe.NAME, pe.WEIGHTS or None,
        vit=dict(patch_size=pe.PATCH_SIZE, window_size=pe.WINDOW_SIZE, global_blocks=list(pe.GLOBAL_BLOCKS),
                 pos_embed=pe.POS_EMBED, rope=pe.ROPE, drop_path_rate=pe.DROP_PATH_RATE,
                 act_checkpoint=pe.ACT_CHECKPOINT),
        out_channels=pe.OUT_CHANNELS, square_pad=pe.SQUARE_PAD,
    )

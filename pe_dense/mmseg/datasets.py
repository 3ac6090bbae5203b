"""The embedded segmentation default as an mmseg dataset: ADE20K layout, its own four classes."""
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from ..data.seg_depth import SHAPES_CLASSES, SHAPES_PALETTE


@DATASETS.register_module()
class PEShapesSegDataset(BaseSegDataset):
    """``images/{training,validation}/*.jpg`` and ``annotations/.../*.png`` as ADE20K (label 0 = other, ignored:
    ``reduce_zero_label=True``), classes background, circle, box, triangle."""

    METAINFO = dict(classes=SHAPES_CLASSES, palette=SHAPES_PALETTE)

    def __init__(self, img_suffix=".jpg", seg_map_suffix=".png", reduce_zero_label=True, **kwargs):
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, reduce_zero_label=reduce_zero_label,
                         **kwargs)

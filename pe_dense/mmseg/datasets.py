"""Datasets for the embedded defaults (generated on first use), and the checks every dataset gets first."""
import os

from mmseg.datasets import BaseSegDataset, NYUDataset
from mmseg.registry import DATASETS

from ..data.seg_depth import SHAPES_CLASSES, SHAPES_PALETTE, make_ade_shapes, make_nyu_planes

DEFAULT_ROOT = os.path.join(os.path.expanduser("~"), ".cache", "pe_dense")


def _root(data_root, name):
    return os.path.expanduser(data_root) if data_root else os.path.join(DEFAULT_ROOT, name)


def embedded_root(dataset_type: str, data_root=None) -> str:
    """Generates (once) the embedded set of ``dataset_type`` and returns its folder."""
    make, name = EMBEDDED[dataset_type]
    return make(_root(data_root, name))


@DATASETS.register_module()
class PEShapesSegDataset(BaseSegDataset):
    """ADE20K layout (``images/{training,validation}/*.jpg``, ``annotations/...*.png``, label 0 = other, ignored with
    ``reduce_zero_label=True``), classes background, circle, box, triangle. ``generate=True`` writes the embedded
    set into ``data_root`` (default ``~/.cache/pe_dense/ade_shapes``) when it is not there."""

    METAINFO = dict(classes=SHAPES_CLASSES, palette=SHAPES_PALETTE)

    def __init__(self, data_root=None, generate=False, img_suffix=".jpg", seg_map_suffix=".png",
                 reduce_zero_label=True, **kwargs):
        data_root = embedded_root("PEShapesSegDataset", data_root) if generate else _root(data_root, "ade_shapes")
        super().__init__(data_root=data_root, img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
                         reduce_zero_label=reduce_zero_label, **kwargs)


@DATASETS.register_module()
class PENYUPlanesDataset(NYUDataset):
    """NYUv2 layout (``images/{train,test}/SCENE_N.jpg``, ``annotations/...png`` uint16 millimetres): planes at known
    depths. ``generate=True`` writes the embedded set (default ``~/.cache/pe_dense/nyu_planes``) when missing."""

    def __init__(self, data_root=None, generate=False, **kwargs):
        data_root = embedded_root("PENYUPlanesDataset", data_root) if generate else _root(data_root, "nyu_planes")
        super().__init__(data_root=data_root, **kwargs)


EMBEDDED = {"PEShapesSegDataset": (make_ade_shapes, "ade_shapes"), "PENYUPlanesDataset": (make_nyu_planes, "nyu_planes")}

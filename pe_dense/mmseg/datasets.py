"""Datasets for the embedded defaults (generated on first use), and the checks every dataset gets first."""
import os

from typing import List

from mmseg.datasets import BaseSegDataset, NYUDataset
from mmseg.registry import DATASETS

from ..data.generated import data_root as generated_root
from ..data.seg_depth import SHAPES_CLASSES, SHAPES_PALETTE, make_ade_shapes, make_nyu_planes

MAX_LABEL_SCAN = 2000


class DataError(ValueError):
    """A dataset that would train or evaluate on wrong data, and how to fix it."""


def check_depth_maps(key: str, paths: List[str]):
    """Depth maps must be single-channel 16-bit images (millimetres for NYUv2, metres x 256 for KITTI): an 8-bit or
    colour PNG would train and evaluate on wrong depths without a word. Reads the headers only."""
    from PIL import Image, UnidentifiedImageError

    for path in paths:
        try:
            with Image.open(path) as im:
                mode, bands = im.mode, len(im.getbands())
        except (OSError, UnidentifiedImageError) as e:
            raise DataError(f"{key}: cannot read the depth map {path} ({type(e).__name__}): not an image?") from e
        if bands != 1 or mode not in ("I;16", "I;16B", "I;16L", "I"):
            what = {"L": "8-bit", "P": "8-bit palette", "RGB": "3-channel 8-bit", "RGBA": "4-channel 8-bit",
                    "F": "32-bit float"}.get(mode, f"mode {mode}")
            raise DataError(f"{key}: {path} is a {what} image; depth maps must be single-channel 16-bit PNGs "
                            f"(uint16: millimetres for NYUv2, metres x 256 for KITTI). Re-save the depth as uint16, "
                            f"e.g. cv2.imwrite(path, (depth_m * 1000).astype(np.uint16))")


@DATASETS.register_module()
class PEDepthDataset(NYUDataset):
    """mmseg's ``NYUDataset`` (a generic reader of images + depth PNGs, used here for NYUv2 and KITTI) that checks
    its depth maps when it lists them (single-channel 16-bit, headers of the first 2000): an 8-bit or colour PNG would
    otherwise train and evaluate on wrong depths without a word, also in mmseg's own tools."""

    def load_data_list(self):
        data_list = super().load_data_list()
        check_depth_maps(type(self).__name__, [d["depth_map_path"] for d in data_list[:MAX_LABEL_SCAN]])
        return data_list


def _root(data_root, name):
    return os.path.expanduser(data_root) if data_root else generated_root(name)


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
class PENYUPlanesDataset(PEDepthDataset):
    """NYUv2 layout (``images/{train,test}/SCENE_N.jpg``, ``annotations/...png`` uint16 millimetres): planes at known
    depths. ``generate=True`` writes the embedded set (default ``~/.cache/pe_dense/nyu_planes``) when missing."""

    def __init__(self, data_root=None, generate=False, **kwargs):
        data_root = embedded_root("PENYUPlanesDataset", data_root) if generate else _root(data_root, "nyu_planes")
        super().__init__(data_root=data_root, **kwargs)


EMBEDDED = {"PEShapesSegDataset": (make_ade_shapes, "ade_shapes"), "PENYUPlanesDataset": (make_nyu_planes, "nyu_planes")}

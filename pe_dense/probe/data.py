"""The probe's data: the usual layouts (ADE20K for ``seg``, NYUv2 for ``depth``, DAVIS for ``track``), images resized
and centre-cropped, labels as cached, and the embedded sets."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np
import torch

from ..data.images import IMAGE_EXTS, load_image, normalize
from ..errors import PEDenseError

TASKS = ("seg", "depth", "track")


class ProbeError(PEDenseError):
    """A probe that cannot run as asked (data, blocks, sizes), and how to fix it."""


@dataclass
class Sample:
    image: str
    label: Optional[str]  # seg: label PNG; depth: 16-bit PNG; track: None


def _pairs(img_dir: str, lab_dir: str, suffix: str) -> List[Sample]:
    if not os.path.isdir(img_dir):
        raise ProbeError(f"image folder not found: {img_dir}")
    if not os.path.isdir(lab_dir):
        raise ProbeError(f"label folder not found: {lab_dir}")
    images = sorted(f for f in os.listdir(img_dir) if f.lower().endswith(IMAGE_EXTS))
    if not images:
        raise ProbeError(f"no images in {img_dir}")
    out, missing = [], []
    for f in images:
        lab = os.path.join(lab_dir, os.path.splitext(f)[0] + suffix)
        (out.append(Sample(os.path.join(img_dir, f), lab)) if os.path.isfile(lab) else missing.append(f))
    if missing:
        raise ProbeError(f"{len(missing)} image(s) in {img_dir} without a label in {lab_dir}, e.g. "
                         f"{', '.join(missing[:3])}")
    return out


def seg_splits(root: str) -> Dict[str, List[Sample]]:
    """ADE20K layout: ``images/{training,validation}/*.jpg``, ``annotations/{training,validation}/*.png`` (0 =
    other, not scored; class c is stored as c + 1)."""
    return {split: _pairs(os.path.join(root, "images", split), os.path.join(root, "annotations", split), ".png")
            for split in ("training", "validation")}


def depth_splits(root: str) -> Dict[str, List[Sample]]:
    """NYUv2 layout as mmseg reads it: ``images/{train,test}/*.jpg``, ``annotations/{train,test}/*.png`` (uint16
    millimetres)."""
    return {split: _pairs(os.path.join(root, "images", split), os.path.join(root, "annotations", split), ".png")
            for split in ("train", "test")}


def load_rgb(path: str, size: int) -> torch.Tensor:
    from PIL import Image

    img = load_image(path)  # read as the frameworks read it (EXIF orientation applied)
    return normalize(resize_crop(img, size, Image.BICUBIC))


def stored(label: torch.Tensor) -> torch.Tensor:
    """Labels as cached: class ids as int16, depths as float32."""
    return label.to(torch.int16) if label.dtype == torch.int64 else label.float()


def resize_crop(img, size: int, resample):
    """Short side to ``size``, then the centre ``size`` x ``size`` crop."""
    w, h = img.size
    s = size / min(w, h)
    nw, nh = max(size, round(w * s)), max(size, round(h * s))
    img = img.resize((nw, nh), resample)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def load_label(task: str, path: str, size: int, depth_scale: float = 1000.0) -> torch.Tensor:
    """seg: (size, size) int64 class ids with -1 = not scored (ADE's 0); depth: (size, size) float metres, 0 = none."""
    from PIL import Image

    img = resize_crop(Image.open(path), size, Image.NEAREST)
    arr = np.asarray(img)
    if task == "seg":
        if arr.ndim != 2:
            raise ProbeError(f"{path}: labels must be single-channel class indices, got shape {arr.shape}")
        return torch.from_numpy(arr.astype(np.int64) - 1)
    if arr.ndim != 2 or arr.dtype != np.uint16:
        raise ProbeError(f"{path}: depth maps must be single-channel 16-bit PNGs (millimetres), got "
                         f"{arr.dtype} {arr.shape}")
    return torch.from_numpy(arr.astype(np.float32) / depth_scale)


def embedded(task: str) -> str:
    from ..data.generated import data_root

    if task == "seg":
        from ..data.seg_depth import make_ade_shapes

        return make_ade_shapes(data_root("ade_shapes"))
    if task == "depth":
        from ..data.seg_depth import make_nyu_planes

        return make_nyu_planes(data_root("nyu_planes"))
    from ..tracking.synthetic import make_davis

    return make_davis(data_root("davis_synthetic"))

"""Datasets for the embedded defaults (generated on first use), and the checks every dataset gets first."""
import os
from typing import List, Optional, Tuple

from mmcv.transforms import BaseTransform
from mmseg.datasets import BaseSegDataset, NYUDataset
from mmseg.registry import DATASETS, TRANSFORMS

from ..data.generated import data_root as generated_root
from ..data.images import IMAGE_EXTS
from ..data.seg_depth import SHAPES_CLASSES, SHAPES_PALETTE, make_ade_shapes, make_nyu_planes
from ..errors import PEDenseError
from ..io import error_summary

MAX_LABEL_SCAN = 2000


class DataError(PEDenseError):
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


EMBEDDED = {"PEShapesSegDataset": (make_ade_shapes, "ade_shapes"),
            "PENYUPlanesDataset": (make_nyu_planes, "nyu_planes")}


# --- a user's own folders -----------------------------------------------------------------------------------------


def read_classes(classes, data_root=None) -> Tuple[List[str], Optional[List[List[int]]]]:
    """Class names (and colours, when every line gives one) from ``classes``: an int N (names ``class_0`` ..),
    a list of names, or a text file (relative to ``data_root``) with one class per line, ``NAME`` or
    ``NAME R G B``; blank lines and ``#`` comments are skipped. Line i is label value i."""
    if isinstance(classes, bool) or classes is None:
        raise DataError("classes: give a text file of class names (one per line), a list of names, or a number N")
    if isinstance(classes, int):
        if classes < 1:
            raise DataError(f"classes={classes}: at least one class")
        return [f"class_{i}" for i in range(classes)], None
    if isinstance(classes, (list, tuple)):
        return [str(c) for c in classes], None
    path = os.path.expanduser(str(classes))
    if data_root and not os.path.isabs(path):
        path = os.path.join(os.path.expanduser(data_root), path)
    if not os.path.isfile(path):
        raise DataError(f"classes file not found: {path} (one class name per line, line i = label value i; or set "
                        f"classes=N for N classes named class_0..class_N-1)")
    names, colours = [], []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.split("#")[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) >= 4 and all(p.isdigit() and int(p) < 256 for p in parts[-3:]):
                names.append(" ".join(parts[:-3]))
                colours.append([int(p) for p in parts[-3:]])
            else:
                names.append(line)
    if not names:
        raise DataError(f"{path} lists no class")
    if len(set(names)) < len(names):
        twice = sorted({c for c in names if names.count(c) > 1})
        raise DataError(f"{path}: class name(s) listed twice: {', '.join(twice)}")
    return names, (colours if len(colours) == len(names) else None)


def _find_images(img_dir: str, suffix: Optional[str]) -> List[str]:
    """Image files under ``img_dir`` (subfolders too) as paths relative to it, sorted."""
    if not os.path.isdir(img_dir):
        raise DataError(f"image folder not found: {img_dir} (check data_root / data_prefix.img_path)")
    exts = (suffix,) if suffix else IMAGE_EXTS
    found = sorted(os.path.relpath(os.path.join(d, f), img_dir) for d, _, files in os.walk(img_dir)
                   for f in files if f.lower().endswith(exts))
    if not found:
        raise DataError(f"no images ({', '.join(exts)}) in {img_dir}")
    return found


def _paired(img_dir: str, lab_dir: str, suffixes, img_suffix=None) -> List[Tuple[str, str]]:
    """(image, label) pairs: each image's label is its relative path with a label suffix, in ``lab_dir``."""
    if not os.path.isdir(lab_dir):
        raise DataError(f"label folder not found: {lab_dir} (check data_root / data_prefix)")
    pairs, missing = [], []
    for rel in _find_images(img_dir, img_suffix):
        stem = os.path.splitext(rel)[0]
        label = next((os.path.join(lab_dir, stem + s) for s in suffixes
                      if os.path.isfile(os.path.join(lab_dir, stem + s))), None)
        if label is None:
            missing.append(rel)
        else:
            pairs.append((os.path.join(img_dir, rel), label))
    if missing:
        raise DataError(f"{len(missing)} image(s) in {img_dir} without a label in {lab_dir}, e.g. "
                        f"{', '.join(missing[:3])} (each image needs NAME{' or NAME'.join(suffixes)} there)")
    return pairs


@DATASETS.register_module()
class PEFolderSegDataset(BaseSegDataset):
    """Your own segmentation data: ``data_root/images/{train,val}/NAME.<any image type>`` and
    ``data_root/labels/{train,val}/NAME.png`` (class index per pixel, 8/16-bit or palette PNG; ``ignore_index``,
    255 by default, is not trained or scored), classes from ``classes`` (``read_classes``: a text file in
    ``data_root``, a list, or N). Subfolders are followed. ``tools/train_mmseg.py`` gives the heads the number of
    classes and the ignore index of the train set; with mmseg's own tools set ``model.decode_head.num_classes``
    (and the auxiliary head's) yourself."""

    def __init__(self, data_root, classes="classes.txt", img_suffix=None, seg_map_suffix=".png",
                 reduce_zero_label=False, ignore_index=255, **kwargs):
        names, colours = read_classes(classes, data_root)
        metainfo = dict(classes=names, **({"palette": colours} if colours else {}))
        kwargs.setdefault("data_prefix", dict(img_path="images/train", seg_map_path="labels/train"))
        super().__init__(data_root=os.path.expanduser(data_root), img_suffix=img_suffix,
                         seg_map_suffix=seg_map_suffix, reduce_zero_label=reduce_zero_label,
                         ignore_index=ignore_index, metainfo=metainfo, **kwargs)

    def load_data_list(self):
        pairs = _paired(self.data_prefix["img_path"], self.data_prefix["seg_map_path"], (self.seg_map_suffix,),
                        self.img_suffix)
        check_label_modes(type(self).__name__, [lab for _, lab in pairs[:MAX_LABEL_SCAN]])
        return [dict(img_path=img, seg_map_path=lab, label_map=self.label_map,
                     reduce_zero_label=self.reduce_zero_label, seg_fields=[]) for img, lab in pairs]


def check_label_modes(key: str, paths: List[str]):
    """Label PNGs hold class indices (one channel): a colour-coded RGB mask would be read as three channels."""
    from PIL import Image

    for path in paths:
        with Image.open(path) as im:
            if len(im.getbands()) != 1:
                raise DataError(f"{key}: {path} is a {im.mode} image; labels must hold one class index per pixel "
                                f"(8/16-bit grayscale or palette PNG). Convert colours to indices first, e.g. with "
                                f"the class colours of classes.txt")


@DATASETS.register_module()
class PEFolderDepthDataset(BaseSegDataset):
    """Your own depth data: ``data_root/images/{train,val}/NAME.<any image type>`` and
    ``data_root/depth/{train,val}/NAME.png`` (single-channel 16-bit, ``depth_scale`` stored values per metre:
    1000 for millimetres, 256 as KITTI) or ``NAME.npy`` (a 2-D float array, depth = value / ``depth_scale``; set
    ``depth_scale=1`` for metres). Pixels at 0 have no depth. ``max_depth`` (metres) is the range the head predicts and
    the metric scores; ``tools/train_mmseg.py`` gives it to the head and the evaluator (with mmseg's own tools set
    ``model.decode_head.max_depth`` and ``val_evaluator.max_depth_eval`` too). Read by ``PELoadDepthAnnotation``."""

    METAINFO = dict(classes=("depth",))

    def __init__(self, data_root, depth_scale=1000.0, max_depth=10.0, img_suffix=None, **kwargs):
        if not depth_scale or depth_scale <= 0 or not max_depth or max_depth <= 0:
            raise DataError(f"depth_scale={depth_scale}, max_depth={max_depth}: both must be > 0")
        self.depth_scale, self.max_depth = float(depth_scale), float(max_depth)
        kwargs.setdefault("data_prefix", dict(img_path="images/train", depth_map_path="depth/train"))
        super().__init__(data_root=os.path.expanduser(data_root), img_suffix=img_suffix, **kwargs)

    def load_data_list(self):
        pairs = _paired(self.data_prefix["img_path"], self.data_prefix["depth_map_path"], (".png", ".npy"),
                        self.img_suffix)
        pngs = [d for _, d in pairs[:MAX_LABEL_SCAN] if d.endswith(".png")]
        check_depth_maps(type(self).__name__, pngs)
        for _, d in pairs[:MAX_LABEL_SCAN]:
            if d.endswith(".npy"):
                check_depth_array(type(self).__name__, d)
        return [dict(img_path=img, depth_map_path=d, depth_scale=self.depth_scale, seg_fields=[])
                for img, d in pairs]


def check_depth_array(key: str, path: str):
    """A ``.npy`` depth map: a 2-D float array without NaN (header and values read, memory-mapped)."""
    import numpy as np

    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{key}: cannot read the depth array {path} ({error_summary(e)})") from None
    if arr.ndim != 2 or arr.dtype.kind not in "fiu":
        raise DataError(f"{key}: {path} holds a {arr.dtype} array of shape {arr.shape}; depth arrays must be 2-D "
                        f"(H, W) numbers (metres x depth_scale)")
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise DataError(f"{key}: {path} contains NaN; store missing depth as 0")


@TRANSFORMS.register_module()
class PELoadDepthAnnotation(BaseTransform):
    """Loads ``depth_map_path`` in metres: a 16-bit PNG or a ``.npy`` array divided by the sample's ``depth_scale``
    (``PEFolderDepthDataset`` sets it; else this transform's). As mmseg's ``LoadDepthAnnotation`` otherwise
    (``gt_depth_map``, ``seg_fields``, ``depth_rescale_factor`` for ``RandomDepthMix``)."""

    def __init__(self, depth_scale: float = 1000.0):
        self.depth_scale = depth_scale

    def transform(self, results):
        import cv2
        import numpy as np

        path = results["depth_map_path"]
        scale = float(results.get("depth_scale", self.depth_scale))
        if path.endswith(".npy"):
            depth = np.load(path, allow_pickle=False).astype(np.float32)
        else:
            depth = cv2.imread(path, cv2.IMREAD_UNCHANGED)
            if depth is None:
                raise DataError(f"cannot read the depth map {path}")
            depth = depth.astype(np.float32)
        results["gt_depth_map"] = depth / scale
        results.setdefault("seg_fields", []).append("gt_depth_map")
        results["depth_rescale_factor"] = 1.0 / scale
        return results

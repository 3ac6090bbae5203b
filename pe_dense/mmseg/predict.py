"""``pe-dense predict`` for an MMSeg config: mmseg's ``init_model`` and the config's test pipeline, the picture mmseg's
``SegLocalVisualizer`` draws (segmentation overlay with class names, or image above its depth colour map; drawn by
``pe_dense.pictures`` a band at a time), and the raw prediction beside each picture (``NAME_labels.png``: class
index per pixel; ``NAME_depth.png``: 16-bit millimetres).

Images of any size: the model's inference runs as a stream of bands of rows (``inference_bands``: windows normalized
from the 8-bit image when needed, a row of windows accumulated at a time), and mmseg's post-processing (padding
removed, bilinear resize to the image's own size, argmax) runs on each band as it comes, so nothing of the size of
the image times the classes is ever held. What grows with the image: the 8-bit image (twice while it loads), the
labels (1 byte a pixel) or depth (4 + 2 bytes) and the picture (3 or 6 bytes)."""
from __future__ import annotations

import os
from typing import List, Optional

import numpy as np
import torch
import torch.nn.functional as F


def _no_annotations(steps):
    """A pipeline without its annotation loaders (there is no ground truth here), inside TestTimeAug too."""
    out = []
    for t in steps:
        if "Annotation" in t["type"]:
            continue
        if t["type"] == "TestTimeAug":
            t = dict(t, transforms=[g for g in ([s for s in group if "Annotation" not in s["type"]]
                                                for group in t["transforms"]) if g])
        out.append(t)
    return out


def _test_pipeline(cfg, tta: bool = False):
    """The config's test pipeline (or its ``tta_pipeline``) without annotation loaders."""
    from mmcv.transforms import Compose

    return Compose(_no_annotations(cfg.tta_pipeline if tta else cfg.test_pipeline))


def _padded_size(pre, h: int, w: int):
    """The size mmseg's data preprocessor pads a test image to (its ``test_cfg``: ``size`` or ``size_divisor``)."""
    test_cfg = getattr(pre, "test_cfg", None) or {}
    if test_cfg.get("size") is not None:
        return max(h, test_cfg["size"][0]), max(w, test_cfg["size"][1])
    div = test_cfg.get("size_divisor")
    if div and div > 1:
        return -(-h // div) * div, -(-w // div) * div
    return h, w


def _window_source(pre, img: torch.Tensor, device):
    """``crop_of(y, x, h, w)``: the preprocessed input there, as mmseg's ``SegDataPreProcessor`` makes it for the
    whole image (BGR -> RGB, normalized, padded with ``pad_val`` on the right and bottom), from the 8-bit image."""
    def crop_of(y, x, h, w):
        t = img[:, y: y + h, x: x + w]
        if pre.channel_conversion and t.shape[0] == 3:
            t = t[[2, 1, 0]]
        t = t.to(device).float()
        if pre._enable_normalize:
            t = (t - pre.mean) / pre.std
        if t.shape[-2:] != (h, w):
            t = F.pad(t, (0, w - t.shape[-1], 0, h - t.shape[-2]), value=pre.pad_val)
        return t[None]
    return crop_of


def prediction_bands(model, data: dict, device="cpu"):
    """One image's prediction at its own size (``ori_shape``) as bands of rows, ``(y0, (K, rows, W))`` in order:
    ``model.inference`` as a stream and mmseg's ``postprocess_result`` on each band (padding off, flip undone,
    bilinear resize with the model's ``align_corners``)."""
    from ..errors import PEDenseError
    from ..modeling.windows import resize_bands

    img, sample = data["inputs"], data["data_samples"]
    h, w = img.shape[-2:]
    pre = model.data_preprocessor
    ph, pw = _padded_size(pre, h, w)
    meta = dict(sample.metainfo, img_shape=(h, w), pad_shape=(ph, pw), padding_size=[0, pw - w, 0, ph - h])
    crop_of = _window_source(pre, img, device)
    if hasattr(model, "inference_bands"):
        bands = model.inference_bands(crop_of, (ph, pw), [meta])
    else:  # another segmentor: its own inference on the whole preprocessed image
        bands = iter([(0, model.inference(crop_of(0, 0, ph, pw), [meta]))])
    flip = meta.get("flip") and meta.get("flip_direction", "horizontal")
    if flip and flip != "horizontal":
        raise PEDenseError(f"predict: a test pipeline that flips {flip}ly; drop the flip from test_pipeline")

    def unpadded():
        for y, band in bands:
            band = band[0, :, : max(0, min(band.shape[-2], h - y)), :w]
            if band.shape[-2]:
                yield y, (band.flip(-1) if flip else band)[None]

    ori = tuple(meta.get("ori_shape", (h, w)))[:2]
    for y, band in resize_bands(unpadded(), (h, w), ori, bool(getattr(model, "align_corners", False))):
        yield y, band[0]


def predict_mmseg(config: str, checkpoint: str, images: List[str], out_dir: str, opts=(), device: str = "cpu",
                  tta: bool = False, window: Optional[int] = None):
    """``tta``: segmentation by the config's ``tta_pipeline`` (scales and flip) merged as mmseg's ``SegTTAModel``
    merges (``tta_bands``), depth with the flip averaged (``test_cfg.flip``). ``window``: sliding ``window`` x
    ``window`` px windows every 2/3 window, blended (``test_cfg`` mode slide, blend ramp), with a progress bar.
    Predictions stream (see the module): memory bounded by a row of windows (one per augmentation with ``tta``)
    and the outputs."""
    from mmengine.config import Config, DictAction
    from mmengine.registry import init_default_scope
    from mmseg.apis import init_model
    from PIL import Image

    import pe_dense.mmseg  # noqa: F401  (registers PE modules; safe checkpoint loading)

    from ..checkpoint import safe_load
    from ..data.images import read_rgb
    from ..errors import PEDenseError
    from ..pictures import depth_picture, seg_overlay
    from .checkpoint import whole_checkpoints
    from .datasets import DataError
    from .segmentors import is_depth
    from .train import apply_dataset_keys, decode_heads

    options = {}
    for item in opts:
        key, _, value = item.partition("=")
        options[key] = DictAction._parse_iterable(value)
    cfg = Config.fromfile(config)
    if options:
        cfg.merge_from_dict(options)
    try:
        apply_dataset_keys(cfg, options)
    except DataError:
        pass  # the training data is not here: the classes come from the checkpoint below
    meta = (safe_load(checkpoint).get("meta") or {}).get("dataset_meta") or {}
    if meta.get("classes") and not is_depth(cfg.model):
        for head in decode_heads(cfg.model):  # the classes it was trained on
            head["num_classes"] = len(meta["classes"])
    depth = is_depth(cfg.model)
    if tta and not depth and not cfg.get("tta_pipeline"):
        raise PEDenseError(f"--tta: {config} has no tta_pipeline (the scales and flips to run); add one as "
                           f"mmseg's configs do (e.g. configs/mmseg/_base_/datasets/folder_seg.py), or drop --tta")
    if window is not None:
        if window <= 0:
            raise PEDenseError(f"--window {window}: a positive size in px")
        cfg.model.test_cfg = dict(cfg.model.test_cfg, mode="slide_flip" if depth and cfg.model.test_cfg.get(
            "mode") == "slide_flip" else "slide", crop_size=(window, window),
            stride=(max(1, window * 2 // 3),) * 2, blend="ramp")
    if tta and depth:
        cfg.model.test_cfg = dict(cfg.model.test_cfg, flip=True)
    seg_tta = tta and not depth
    if seg_tta and cfg.get("tta_model", {}).get("type", "SegTTAModel") != "SegTTAModel":
        raise PEDenseError(f"--tta: tta_model {cfg.tta_model.type} in {config}; pe-dense predict merges as mmseg's "
                           f"SegTTAModel does (the mean of the augmentations' probabilities)")
    init_default_scope(cfg.get("default_scope", "mmseg"))
    with whole_checkpoints():  # a trained model: every tensor from the file, or the keys named
        model = init_model(cfg, checkpoint, device=device)
    model.progress = window is not None
    pipeline = _test_pipeline(model.cfg, seg_tta)
    classes, palette = model.dataset_meta.get("classes"), model.dataset_meta.get("palette")
    written = []
    for path in images:
        data = pipeline(dict(img_path=path))
        stem = os.path.join(out_dir, os.path.splitext(os.path.basename(path))[0])
        hw = min((tuple(x.shape[-2:]) for x in (data["inputs"] if seg_tta else [data["inputs"]])), key=min)
        if window is not None and min(hw) < window:
            raise PEDenseError(f"--window {window} is larger than {path} after the test resize ({hw}): give "
                               f"a smaller --window, or none")
        _hint_window(model, cfg, hw, path)
        result = _stream(model, data, depth, classes, device, seg_tta)
        del data
        rgb = read_rgb(path)
        if rgb.shape[:2] != result.shape:
            raise PEDenseError(f"{path}: the prediction is {result.shape}, the image {rgb.shape[:2]}")
        if depth:
            picture = depth_picture(rgb, result)
            raw = stem + "_depth.png"
            mm = np.empty(result.shape, np.uint16)
            for y in range(0, result.shape[0], 256):  # metres -> millimetres a band at a time
                mm[y: y + 256] = np.clip(result[y: y + 256] * 1000.0, 0, 65535).round()
            _png(raw, Image.fromarray(mm))
            what = f"depth {result.min():.2f}..{result.max():.2f} m"
            del mm
        else:
            picture = seg_overlay(rgb, result, classes, palette, 0.5, True)
            raw = stem + "_labels.png"
            lab = Image.fromarray(result, mode="P") if result.dtype == np.uint8 else Image.fromarray(result)
            if palette and result.dtype == np.uint8:
                lab.putpalette([int(c) for rgb_ in palette for c in rgb_][:768])
            _png(raw, lab)
            counts = np.bincount(result.ravel(), minlength=len(classes))
            present = [classes[i] for i in np.flatnonzero(counts) if i < len(classes)]
            what = f"classes present: {', '.join(present[:8])}"
            del lab
        del rgb
        _png(stem + ".png", Image.fromarray(picture))
        del picture, result
        print(f"{path}: {what} -> {stem}.png, {raw}")
        written.append(stem + ".png")
    return written


def _hint_window(model, cfg, hw, path: str):
    """A hint (stderr) before whole-image inference on an image far larger than the training crop: every token
    goes through the global blocks' attention at once, which may not fit."""
    import sys

    crop = cfg.get("crop_size")
    if model.test_cfg.get("mode", "whole") != "whole" or not crop or hw[0] * hw[1] <= 4 * crop[0] * crop[1]:
        return
    print(f"predict: {path} is {hw[1]} x {hw[0]} px after the test resize, whole-image inference (the training "
          f"crop is {crop[1]} x {crop[0]}); if it runs out of memory, give --window {max(crop)}", file=sys.stderr)


def _png(path: str, image):
    from ..io import write_atomic

    write_atomic(path, lambda p: image.save(p, format="PNG"))


def tta_bands(model, data: dict, device="cpu"):
    """mmseg's ``SegTTAModel`` as a stream: each augmentation of the ``tta_pipeline`` (scales, flips) predicted as
    bands at the image's size (``prediction_bands``), in step, merged as ``merge_preds`` merges: the mean of the
    softmax (sigmoid for one class). Yields ``(y0, (K, rows, W))`` probabilities."""
    from ..modeling.windows import zip_bands

    streams = [prediction_bands(model, dict(inputs=x, data_samples=s), device)
               for x, s in zip(data["inputs"], data["data_samples"])]
    for y, bands in zip_bands(streams):
        yield y, sum(b.softmax(0) if b.shape[0] > 1 else b.sigmoid() for b in bands) / len(bands)


def _stream(model, data: dict, depth: bool, classes, device, tta: bool = False) -> np.ndarray:
    """The labels (uint8, uint16 past 256 classes; the probability over the head's threshold for one class) or the
    depth (float32 metres) at the image's size, filled a band at a time from ``prediction_bands`` (``tta_bands``
    for segmentation with ``tta``)."""
    sample = data["data_samples"][0] if tta else data["data_samples"]
    ori = tuple(sample.metainfo["ori_shape"])[:2]
    out = np.empty(ori, np.float32 if depth else (np.uint8 if len(classes) <= 256 else np.uint16))
    with torch.no_grad():
        for y, band in (tta_bands if tta else prediction_bands)(model, data, device):
            if depth:
                rows = band[0]
            elif band.shape[0] > 1:
                rows = band.argmax(0)
            else:
                rows = (band[0] if tta else band[0].sigmoid()) > model.decode_head.threshold
            out[y: y + band.shape[-2]] = rows.cpu().numpy()
    return out

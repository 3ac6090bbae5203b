"""``pe-dense predict`` for an MMSeg config: mmseg's ``init_model`` and the config's test pipeline, pictures drawn by
mmseg's ``SegLocalVisualizer`` (segmentation overlay with class names, or image above its depth colour map), and
the raw prediction beside each picture (``NAME_labels.png``: class index per pixel; ``NAME_depth.png``: 16-bit
millimetres)."""
from __future__ import annotations

import os
from typing import List, Optional

import numpy as np
import torch


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


def predict_mmseg(config: str, checkpoint: str, images: List[str], out_dir: str, opts=(), device: str = "cpu",
                  tta: bool = False, window: Optional[int] = None):
    """``tta``: segmentation through mmseg's ``SegTTAModel`` and the config's ``tta_pipeline`` (scales and flip),
    depth with the flip averaged (``test_cfg.flip``). ``window``: sliding ``window`` x ``window`` px windows every
    2/3 window, blended (``test_cfg`` mode slide, blend ramp), with a progress bar: images far larger than the
    training crop, in memory bounded by the window and the output."""
    from mmengine.config import Config, DictAction
    from mmengine.registry import init_default_scope
    from mmseg.apis import init_model
    from mmseg.visualization import SegLocalVisualizer
    from PIL import Image

    import pe_dense.mmseg  # noqa: F401  (registers PE modules; safe checkpoint loading)

    from ..checkpoint import safe_load
    from ..errors import PEDenseError
    from ..io import write_atomic
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
    init_default_scope(cfg.get("default_scope", "mmseg"))
    model = init_model(cfg, checkpoint, device=device)
    model.progress = window is not None
    pipeline = _test_pipeline(model.cfg, tta and not depth)
    runner = model
    if tta and not depth:
        from mmseg.registry import MODELS

        runner = MODELS.build(dict(cfg.get("tta_model", dict(type="SegTTAModel")), module=model))
    vis = SegLocalVisualizer.get_instance(f"pe_dense_predict_{os.getpid()}", alpha=0.5)
    vis.dataset_meta = model.dataset_meta
    written = []
    for path in images:
        data = pipeline(dict(img_path=path))
        if runner is not model:  # one batch per augmentation
            batch = dict(inputs=[[x] for x in data["inputs"]], data_samples=[[s] for s in data["data_samples"]])
        else:
            batch = dict(inputs=[data["inputs"]], data_samples=[data["data_samples"]])
            if window is not None and min(data["inputs"].shape[-2:]) < window:
                raise PEDenseError(f"--window {window} is larger than {path} after the test resize "
                                   f"({tuple(data['inputs'].shape[-2:])}): give a smaller --window, or none")
        with torch.no_grad():
            sample = runner.test_step(batch)[0]
        rgb = np.asarray(Image.open(path).convert("RGB"))
        stem = os.path.join(out_dir, os.path.splitext(os.path.basename(path))[0])
        picture = vis._draw_depth_map(rgb, sample.pred_depth_map) if "pred_depth_map" in sample else \
            vis._draw_sem_seg(rgb, sample.pred_sem_seg, model.dataset_meta["classes"],
                              model.dataset_meta.get("palette"), True)
        write_atomic(stem + ".png", lambda p: Image.fromarray(np.asarray(picture)).save(p, format="PNG"))
        if "pred_depth_map" in sample:
            depth = sample.pred_depth_map.data[0].cpu().numpy()
            raw = stem + "_depth.png"
            mm = np.clip(depth * 1000.0, 0, 65535).round().astype(np.uint16)
            write_atomic(raw, lambda p: Image.fromarray(mm).save(p, format="PNG"))
            what = f"depth {depth.min():.2f}..{depth.max():.2f} m"
        else:
            ids = sample.pred_sem_seg.data[0].cpu().numpy().astype(np.uint8)
            raw = stem + "_labels.png"
            lab = Image.fromarray(ids, mode="P")
            palette = model.dataset_meta.get("palette")
            if palette:
                lab.putpalette([int(c) for rgb_ in palette for c in rgb_][:768])
            write_atomic(raw, lambda p: lab.save(p, format="PNG"))
            names = model.dataset_meta["classes"]
            present = [names[i] for i in np.unique(ids) if i < len(names)]
            what = f"classes present: {', '.join(present[:8])}"
        print(f"{path}: {what} -> {stem}.png, {raw}")
        written.append(stem + ".png")
    return written

"""``pe-dense predict`` for an MMSeg config: mmseg's ``init_model`` and the config's test pipeline, pictures drawn by
mmseg's ``SegLocalVisualizer`` (segmentation overlay with class names, or image above its depth colour map), and
the raw prediction beside each picture (``NAME_labels.png``: class index per pixel; ``NAME_depth.png``: 16-bit
millimetres)."""
from __future__ import annotations

import os
from typing import List

import numpy as np
import torch


def _test_pipeline(cfg):
    """The config's test pipeline without its annotation loaders (there is no ground truth here)."""
    from mmcv.transforms import Compose

    steps = [t for t in cfg.test_pipeline if "Annotation" not in t["type"]]
    return Compose(steps)


def predict_mmseg(config: str, checkpoint: str, images: List[str], out_dir: str, opts=(), device: str = "cpu"):
    from mmengine.config import Config, DictAction
    from mmengine.registry import init_default_scope
    from mmseg.apis import init_model
    from mmseg.visualization import SegLocalVisualizer
    from PIL import Image

    import pe_dense.mmseg  # noqa: F401  (registers PE modules; safe checkpoint loading)

    from ..checkpoint import safe_load
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
    init_default_scope(cfg.get("default_scope", "mmseg"))
    model = init_model(cfg, checkpoint, device=device)
    pipeline = _test_pipeline(model.cfg)
    vis = SegLocalVisualizer.get_instance(f"pe_dense_predict_{os.getpid()}", alpha=0.5)
    vis.dataset_meta = model.dataset_meta
    written = []
    for path in images:
        data = pipeline(dict(img_path=path))
        batch = dict(inputs=[data["inputs"]], data_samples=[data["data_samples"]])
        with torch.no_grad():
            sample = model.test_step(batch)[0]
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

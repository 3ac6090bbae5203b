"""``pe-dense predict`` for a Detectron2 LazyConfig: the config's model and test-time resize (as Detectron2's
``DefaultPredictor`` does for yacs configs), weights through the safe checkpointer, pictures by Detectron2's
``Visualizer`` and the instances as JSON."""
from __future__ import annotations

import os
from typing import List

import numpy as np
import torch


def predict_detectron2(config: str, checkpoint: str, images: List[str], out_dir: str, opts=(),
                       score_thresh: float = 0.5, device: str = "cpu", tta: bool = False) -> List[str]:
    """``tta``: Detectron2's ``GeneralizedRCNNWithTTA`` (test scales 0.75 and 1 of the config's, and the flip)."""
    import detectron2.data.transforms as T
    from detectron2.config import LazyConfig, instantiate
    from detectron2.data import MetadataCatalog
    from detectron2.utils.visualizer import Visualizer
    from PIL import Image

    from ..data.images import load_image
    from ..io import write_atomic, write_json
    from .custom import check_dataset
    from .train import SafeCheckpointer, init_weights
    from .tta import with_tta

    cfg = LazyConfig.apply_overrides(LazyConfig.load(config), list(opts))
    test = cfg.dataloader.test.dataset
    if "json_file" in test:
        check_dataset(test)  # a custom set: checked and registered, its classes named
    meta = MetadataCatalog.get(test.names if isinstance(test.names, str) else test.names[0])
    model = instantiate(cfg.model).to(device).eval()
    init_weights(model, SafeCheckpointer(model), checkpoint, whole=True)
    run = with_tta(cfg, model) if tta else model
    aug = T.AugmentationList([instantiate(a) for a in cfg.dataloader.test.mapper.augmentations])
    fmt = cfg.model.input_format
    written = []
    for path in images:
        rgb = np.asarray(load_image(path))
        img = rgb if fmt == "RGB" else rgb[:, :, ::-1]
        inp = T.AugInput(np.ascontiguousarray(img))
        if not tta:  # the TTA wrapper resizes the original image itself, at each of its scales
            aug(inp)
        tensor = torch.as_tensor(np.ascontiguousarray(inp.image.transpose(2, 0, 1))).float()
        with torch.no_grad():
            inst = run([{"image": tensor.to(device), "height": rgb.shape[0], "width": rgb.shape[1]}])[0]
        inst = inst["instances"].to("cpu")
        inst = inst[inst.scores >= score_thresh]
        picture = Visualizer(rgb, meta).draw_instance_predictions(inst).get_image()
        stem = os.path.join(out_dir, os.path.splitext(os.path.basename(path))[0])
        write_atomic(stem + ".png", lambda p: Image.fromarray(np.asarray(picture)).save(p, format="PNG"))
        classes = meta.get("thing_classes", None)
        record = [dict(box=[round(float(v), 2) for v in b], score=round(float(s), 4), class_id=int(c),
                       **({"class": classes[int(c)]} if classes else {}))
                  for b, s, c in zip(inst.pred_boxes.tensor, inst.scores, inst.pred_classes)]
        write_json(stem + ".json", dict(image=os.path.abspath(path), instances=record))
        print(f"{path}: {len(record)} instance(s) with score >= {score_thresh} -> {stem}.png, {stem}.json")
        written.append(stem + ".png")
    return written

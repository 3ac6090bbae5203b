"""``pe-dense predict``: pictures of a trained model's predictions, with the framework chosen from the config (one
place): a Detectron2 LazyConfig draws detections with masks, an MMSeg config a segmentation overlay or a depth map."""
from __future__ import annotations

import os
import re
from typing import List, Optional

from .errors import PEDenseError
from .io import default_device


def config_framework(path: str) -> str:
    """``"mmseg"`` for an mmengine config (``_base_``, ``custom_imports`` or ``dict(type=...)``), ``"detectron2"``
    for a LazyConfig (Python that imports its parts: ``LazyCall``, ``model_zoo``, other configs)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config not found: {path}")
    with open(path) as f:
        text = f.read()
    if re.search(r"^_base_\s*=|^custom_imports\s*=|\bdict\(\s*type\s*=|[\"']type[\"']\s*:", text, re.M):
        return "mmseg"
    if re.search(r"^\s*(from|import)\s", text, re.M):
        return "detectron2"
    raise PEDenseError(f"{path}: neither an MMSeg (mmengine) config nor a Detectron2 LazyConfig")


def predict(config: str, checkpoint: str, inputs: List[str], out: str = "predictions",
            cfg_options: Optional[List[str]] = None, score_thresh: float = 0.5, device: Optional[str] = None,
            tta: bool = False, window: Optional[int] = None):
    """Writes ``OUT/NAME.png`` (and the raw outputs) for each image of ``inputs``; items of ``inputs`` of the form
    ``key=value`` that are not files are config overrides, as are ``cfg_options``. ``tta``: test-time augmentation
    (Detectron2's GeneralizedRCNNWithTTA; MMSeg's SegTTAModel, or the flip for depth). ``window``: MMSeg configs
    predict in blended sliding windows of that size (images of any size)."""
    images = [a for a in inputs if not ("=" in a and not os.path.exists(a))]
    opts = [a for a in inputs if a not in images] + list(cfg_options or [])
    if not images:
        raise PEDenseError("predict: give at least one image after CONFIG and CHECKPOINT")
    for path in images:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"image not found: {path}")
    framework = config_framework(config)
    if framework == "detectron2" and window is not None:
        raise PEDenseError("--window is for MMSeg configs: a Detectron2 config runs the whole image at its test resize")
    device = device or default_device()
    os.makedirs(out, exist_ok=True)
    if framework == "detectron2":
        from .detectron2.predict import predict_detectron2

        return predict_detectron2(config, checkpoint, images, out, opts, score_thresh, device, tta)
    from .mmseg.predict import predict_mmseg

    return predict_mmseg(config, checkpoint, images, out, opts, device, tta, window)

"""Test-time augmentation for Detectron2 LazyConfig models: Detectron2's own ``GeneralizedRCNNWithTTA`` (the test
resize at several scales, and the left-right flip; boxes merged by NMS, masks averaged), set up from a LazyConfig as
Detectron2's yacs tools set it up from ``TEST.AUG``."""
from __future__ import annotations

from typing import Sequence

from ..errors import PEDenseError

SCALES = (0.75, 1.0)  # of the config's test short side; the long side stays within its max_size (the square pad)


def tta_sizes(cfg, scales: Sequence[float] = SCALES):
    """(min sizes, max size) from the config's test ``ResizeShortestEdge``."""
    augs = cfg.dataloader.test.mapper.get("augmentations", [])
    resize = next((a for a in augs if "short_edge_length" in a), None)
    if resize is None:
        raise PEDenseError("test-time augmentation needs the config's test resize (dataloader.test.mapper."
                           "augmentations = [ResizeShortestEdge(...)]): it sets the TTA scales")
    short = resize.short_edge_length
    short = short[-1] if isinstance(short, (list, tuple)) else short
    return tuple(sorted({int(round(short * s)) for s in scales})), int(resize.max_size)


def _is_deta(model) -> bool:
    from .deta import DETA

    return isinstance(getattr(model, "module", model), DETA)


def describe_tta(cfg, model) -> str:
    """One line: what ``with_tta`` will run."""
    if _is_deta(model):
        from .deta.tta import with_deta_tta

        t = with_deta_tta(cfg, model)
        flip = " each with the flip" if t.flip else ""
        return (f"test-time augmentation: DETA as released, longest sides {t.sizes}{flip}, {t.num_queries} queries, "
                f"soft-NMS {t.soft_nms} (IoU {t.nms_thresh}, quad_scale {t.quad_scale}) per view and over all views")
    sizes, max_size = tta_sizes(cfg)
    return (f"test-time augmentation: GeneralizedRCNNWithTTA, short sides {list(sizes)} (long side at most "
            f"{max_size}), each with the flip")


def with_tta(cfg, model, scales: Sequence[float] = SCALES, flip: bool = True):
    """``model`` (a GeneralizedRCNN, DDP or not) wrapped in ``GeneralizedRCNNWithTTA`` at ``scales`` of the config's
    test size, with the flip; call it as the model (a list of dicts with the original ``image``). A DETA model gets
    the released DETA TTA instead (``pe_dense.detectron2.deta.tta``: the config's ``tta``, or the released recipe
    of its size)."""
    from detectron2.config import get_cfg
    from detectron2.modeling import GeneralizedRCNNWithTTA

    if _is_deta(model):
        from .deta.tta import with_deta_tta

        return with_deta_tta(cfg, model)
    sizes, max_size = tta_sizes(cfg, scales)
    inner = getattr(model, "module", model)
    c = get_cfg()
    c.MODEL.MASK_ON = bool(getattr(inner.roi_heads, "mask_on", False))
    c.MODEL.KEYPOINT_ON = False
    c.MODEL.LOAD_PROPOSALS = False
    c.INPUT.FORMAT = cfg.model.input_format
    c.TEST.AUG.ENABLED = True
    c.TEST.AUG.MIN_SIZES = sizes
    c.TEST.AUG.MAX_SIZE = max_size
    c.TEST.AUG.FLIP = flip
    return GeneralizedRCNNWithTTA(c, model, batch_size=1)

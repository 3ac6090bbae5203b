"""DETA's test-time augmentation as the released DETA_pe evaluates it (``engine_tta.py``, ``--tta --soft_nms``).

Each test image, at the config's test size (longest side S - 32: the test loader's; an original image, as
``pe-dense predict`` passes it, is resized to it first), is also resized (bilinear, antialiased:
torchvision's ``F.resize`` on the tensor, as released) to longest sides ``sizes[1:]``; every view is run as it is and
flipped left-right (the flipped view's boxes mirrored back: cx -> 1 - cx), each view post-processed on its own by
class-wise soft-NMS (``quad``, IoU 0.7, ``quad_scale`` 0.5) over its best 2000 (query, class) pairs, its boxes kept
only inside the view's size range (sqrt of the box area in original-image pixels, ``ranges``), and all views merged
by the same soft-NMS. Queries: 2000 (the released ``--num_queries 2000``).

The released sizes: for 1824 px the test size 1792 and 1728, 1536, 1344, the two smaller views keeping boxes of more
than 64 px; for 1728 px 1696, 1536, 1152, the smaller two keeping more than 32 px. For any other square size S (the
released code has no other) the 1824 recipe is scaled: the test size S - 32 and 1728/1792, 1536/1792, 1344/1792 of
it (rounded to pixels), the 64 px floor times S / 1824: ``released_tta(S)``.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from detectron2.structures import Boxes, Instances
from torch import nn

from ...errors import PEDenseError
from .criterion import batched_soft_nms, nms_postprocess

NO_LIMIT = 10000.0
RELEASED = {
    1824: dict(sizes=[1792, 1728, 1536, 1344], ranges=[[0, NO_LIMIT], [0, NO_LIMIT], [64, NO_LIMIT], [64, NO_LIMIT]]),
    1728: dict(sizes=[1696, 1536, 1152], ranges=[[0, NO_LIMIT], [32, NO_LIMIT], [32, NO_LIMIT]]),
}


def released_tta(image_size: int, num_queries: int = 2000, flip: bool = True, soft_nms: str = "quad",
                 quad_scale: float = 0.5, nms_thresh: float = 0.7, topk: Optional[int] = None) -> Dict:
    """The TTA recipe of a DETA config of square size ``image_size`` (a plain dict for the config's ``tta``).
    ``topk=None``: every detection that survives the merge goes to the evaluator, as released (COCO's evaluation
    keeps the best 100 per image and class)."""
    if image_size in RELEASED:
        rec = {k: [list(r) if isinstance(r, list) else r for r in v] for k, v in RELEASED[image_size].items()}
    else:
        test, f = image_size - 32, image_size / 1824
        sizes = [test] + [max(1, int(round(test * s / 1792))) for s in (1728, 1536, 1344)]
        rec = dict(sizes=sizes, ranges=[[0, NO_LIMIT], [0, NO_LIMIT], [64 * f, NO_LIMIT], [64 * f, NO_LIMIT]])
    return dict(rec, num_queries=num_queries, flip=flip, soft_nms=soft_nms, quad_scale=quad_scale,
                nms_thresh=nms_thresh, topk=topk)


def in_range(boxes: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """The released ``filter_boxes``: lo^2 < w h < hi^2 (xyxy boxes)."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return (area > lo * lo) & (area < hi * hi)


def unflip(boxes_cxcywh: torch.Tensor) -> torch.Tensor:
    """Boxes predicted on the mirrored image, normalized (cx, cy, w, h), mirrored back: cx -> 1 - cx."""
    return torch.cat([1 - boxes_cxcywh[..., :1], boxes_cxcywh[..., 1:]], dim=-1)


def resize_longest(image: torch.Tensor, longest: int) -> torch.Tensor:
    """(C, H, W) float image resized so that its longest side is ``longest`` (sides ``int(scale * side)``, as
    released), bilinear with antialiasing (torchvision's tensor resize)."""
    h, w = image.shape[-2:]
    scale = longest / max(h, w)
    size = (int(scale * h), int(scale * w))
    if size == (h, w):
        return image
    return F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False, antialias=True)[0]


class DETAWithTTA(nn.Module):
    """A ``DETA`` model (DDP or not) evaluated with the released test-time augmentation; call it as the model (a list
    of dicts with ``image`` at the test size, ``height``, ``width``). Arguments: ``released_tta``'s keys."""

    def __init__(self, model, sizes: Sequence[int], ranges: Sequence[Sequence[float]], num_queries: int = 2000,
                 flip: bool = True, soft_nms: str = "quad", quad_scale: float = 0.5, nms_thresh: float = 0.7,
                 topk: Optional[int] = None):
        super().__init__()
        if len(sizes) != len(ranges):
            raise PEDenseError(f"tta.sizes has {len(sizes)} sizes and tta.ranges {len(ranges)}: one (min, max) box "
                               f"size range per size")
        self.model = model
        self.sizes, self.ranges = [int(s) for s in sizes], [tuple(float(v) for v in r) for r in ranges]
        self.num_queries, self.flip = num_queries, flip
        self.soft_nms, self.quad_scale, self.nms_thresh, self.topk = soft_nms, quad_scale, nms_thresh, topk
        inner = self.inner
        pad = inner.backbone._square_pad
        if pad and max(self.sizes) > pad:
            raise PEDenseError(f"tta.sizes {self.sizes} go past model.backbone.square_pad={pad}: the model sees "
                               f"every image padded to that square")

    @property
    def inner(self):
        return getattr(self.model, "module", self.model)

    def views(self, image: torch.Tensor) -> List[tuple]:
        """(image, flipped, range) of every view of one test image."""
        out = []
        for size, rng in zip(self.sizes, self.ranges):
            img = resize_longest(image.float(), size)  # at the test size already (the test loader): unchanged
            out.append((img, False, rng))
            if self.flip:
                out.append((img.flip(-1), True, rng))
        return out

    @torch.no_grad()
    def forward(self, batched_inputs: List[Dict]):
        model = self.inner
        was, queries = model.training, model.test_num_queries
        model.eval()
        model.test_num_queries = self.num_queries
        try:
            return [self._one(x) for x in batched_inputs]
        finally:
            model.test_num_queries = queries
            model.train(was)

    def _one(self, x: Dict) -> Dict:
        model = self.inner
        size = (x.get("height", x["image"].shape[-2]), x.get("width", x["image"].shape[-1]))
        boxes, scores, labels = [], [], []
        for img, flipped, (lo, hi) in self.views(x["image"]):
            images = model.preprocess_image([{"image": img}])
            out = model.raw_outputs(images)
            pred = unflip(out["pred_boxes"].float()) if flipped else out["pred_boxes"].float()
            det = nms_postprocess(out["pred_logits"].float(), pred, [size], topk=None, nms_thresh=self.nms_thresh,
                                  soft_nms=self.soft_nms, quad_scale=self.quad_scale)[0]
            keep = in_range(det["boxes"], lo, hi)
            boxes.append(det["boxes"][keep])
            scores.append(det["scores"][keep])
            labels.append(det["labels"][keep])
        boxes, scores, labels = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
        keep, scores = batched_soft_nms(boxes, scores, labels, self.nms_thresh, self.soft_nms,
                                        quad_scale=self.quad_scale)
        keep, scores = keep[:self.topk], scores[:self.topk]
        inst = Instances(tuple(int(s) for s in size))
        inst.pred_boxes = Boxes(boxes[keep])
        inst.scores = scores
        inst.pred_classes = labels[keep]
        return {"instances": inst}


def with_deta_tta(cfg, model) -> DETAWithTTA:
    """``model`` wrapped in ``DETAWithTTA`` with the config's ``tta`` (``released_tta`` of its square size when the
    config has none)."""
    rec = cfg.get("tta", None)
    if rec is None:
        rec = released_tta(getattr(model, "module", model).backbone._square_pad)
    return DETAWithTTA(model, **dict(rec))


__all__ = ["DETAWithTTA", "released_tta", "with_deta_tta", "unflip", "in_range", "resize_longest"]

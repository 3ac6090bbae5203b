"""DETA's IoU-based one-to-many assignment (Ouyang-Zhang et al. 2022, ``models/assigner.py`` of DETA and of the
released DETA_pe), written on Detectron2's own ``Matcher`` and ``subsample_labels``, which the released code copies.

Stage 1 (the encoder's proposals, one per token "anchor"): RPN's rule, IoU >= 0.7 positive, < 0.3 negative, each
ground truth also takes its best anchors (ties included); 256 samples, half positive at most. Stage 2 (the decoder's
queries, by their initial reference boxes): Fast R-CNN's rule, IoU >= 0.6 positive plus each ground truth's best;
``num_queries`` samples, a quarter positive at most. In both, a ground truth with c sampled positives keeps its top
min(c, k) boxes by IoU over all boxes (DETA's ``sample_topk_per_gt``, k = 4), which need not be the sampled ones.

Boxes are (cx, cy, w, h), as DETA's; a pair of index tensors (boxes, ground truths) per image is returned.
"""
from typing import List, Sequence, Tuple

import torch
from torch import nn
from torchvision.ops import box_convert, box_iou

Indices = List[Tuple[torch.Tensor, torch.Tensor]]


def _matcher(thresholds, labels):
    from detectron2.modeling.matcher import Matcher

    return Matcher(thresholds, labels, allow_low_quality_matches=True)


def topk_per_gt(pr_inds: torch.Tensor, gt_inds: torch.Tensor, iou: torch.Tensor, k: int):
    """Each ground truth among ``gt_inds`` with c entries: its min(c, k) boxes of highest IoU (over all boxes)."""
    if len(gt_inds) == 0:
        return pr_inds, gt_inds
    gts, counts = gt_inds.unique(return_counts=True)
    top = iou[gts].topk(min(k, iou.shape[1]), dim=1).indices
    pr = torch.cat([t[:c] for c, t in zip(counts.tolist(), top)])
    gt = torch.cat([g.repeat(min(c, top.shape[1])) for c, g in zip(counts.tolist(), gts)])
    return pr, gt


def _iou(gt_cxcywh: torch.Tensor, boxes_cxcywh: torch.Tensor) -> torch.Tensor:
    return box_iou(box_convert(gt_cxcywh, "cxcywh", "xyxy"), box_convert(boxes_cxcywh, "cxcywh", "xyxy"))


class Stage1Assigner(nn.Module):
    def __init__(self, t_low: float = 0.3, t_high: float = 0.7, max_k: int = 4, batch_size_per_image: int = 256,
                 positive_fraction: float = 0.5):
        super().__init__()
        self.k, self.batch_size_per_image, self.positive_fraction = max_k, batch_size_per_image, positive_fraction
        self.matcher = _matcher([t_low, t_high], [0, -1, 1])

    def forward(self, anchors: Sequence[torch.Tensor], gt_boxes: Sequence[torch.Tensor]) -> Indices:
        """``anchors[b]`` (A, 4) and ``gt_boxes[b]`` (G, 4), (cx, cy, w, h) in [0, 1]."""
        from detectron2.modeling.sampling import subsample_labels

        out = []
        for a, g in zip(anchors, gt_boxes):
            if len(g) == 0:
                empty = torch.zeros(0, dtype=torch.long, device=a.device)
                out.append((empty, empty))
                continue
            iou = _iou(g, a)
            matched, labels = self.matcher(iou)
            pos, neg = subsample_labels(labels, self.batch_size_per_image, self.positive_fraction, 0)
            labels.fill_(-1)
            labels.scatter_(0, pos, 1)
            labels.scatter_(0, neg, 0)
            pr = torch.arange(len(a), device=a.device)[labels == 1]
            out.append(topk_per_gt(pr, matched[pr], iou, self.k))
        return out


class Stage2Assigner(nn.Module):
    def __init__(self, num_queries: int, max_k: int = 4, positive_fraction: float = 0.25, threshold: float = 0.6):
        super().__init__()
        self.k, self.batch_size_per_image, self.positive_fraction = max_k, num_queries, positive_fraction
        self.matcher = _matcher([threshold], [0, 1])

    def forward(self, boxes: Sequence[torch.Tensor], gt_boxes: Sequence[torch.Tensor],
                gt_classes: Sequence[torch.Tensor]) -> Indices:
        """``boxes[b]`` (Q, 4): the queries' initial reference boxes; ``gt_boxes[b]`` (G, 4); ``gt_classes[b]`` (G,)."""
        from detectron2.modeling.sampling import subsample_labels

        out = []
        for q, g, c in zip(boxes, gt_boxes, gt_classes):
            iou = _iou(g, q.detach())
            matched, labels = self.matcher(iou)
            bg = -2  # below every class: DETA's 400 ("a number > 91"), which a dataset of 400+ classes would hit
            if len(c):
                cls = c[matched].clone()
                cls[labels == 0] = bg
                cls[labels == -1] = -1
            else:
                cls = torch.full_like(matched, bg)
            pos, neg = subsample_labels(cls, self.batch_size_per_image, self.positive_fraction, bg)
            sampled = torch.cat([pos, neg])
            pr = sampled[cls[sampled] != bg]
            out.append(topk_per_gt(pr, matched[pr], iou, self.k))
        return out

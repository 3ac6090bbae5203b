"""DETA's losses (the released DETA_pe ``SetCriterion`` with ``assign_first_stage`` and ``assign_second_stage``) and
its NMS post-processing (``NMSPostProcess``), on torchvision's own focal loss, GIoU loss and NMS.

Losses, per output (the last decoder layer, each earlier layer ``_0 .. _{D-2}``, the encoder's proposals ``_enc``):
sigmoid focal loss (alpha 0.25, gamma 2) over all queries and classes, summed and divided by the number of ground
truths (DETR's ``loss.mean(1).sum() / num_boxes * Q``), and for the assigned pairs L1 and GIoU on (cx, cy, w, h)
boxes normalized to each image. The queries of every decoder layer are assigned once, by ``Stage2Assigner`` on the
initial reference boxes (as released: the same indices for every layer); the proposals by ``Stage1Assigner`` on the
tokens' anchors, class-agnostic (every label 0). Weights (the released scripts): class 1, L1 5, GIoU 2 for each.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch
from torch import nn
from torchvision.ops import batched_nms, box_convert, generalized_box_iou_loss, sigmoid_focal_loss

from .assigners import Stage1Assigner, Stage2Assigner

Targets = List[Dict[str, torch.Tensor]]


def _world_mean(n: float, device) -> float:
    t = torch.as_tensor([float(n)], device=device)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(t)
        t = t / torch.distributed.get_world_size()
    return max(t.item(), 1.0)


class DETACriterion(nn.Module):
    """``forward(outputs, targets)``: ``outputs`` the head's dict (``pe_dense.modeling.deta.DETA``), ``targets`` one
    dict per image with ``labels`` (G,) int64 in [0, K) and ``boxes`` (G, 4) normalized (cx, cy, w, h). Returns the
    weighted losses (``loss_ce``, ``loss_bbox``, ``loss_giou`` with their suffixes), which a trainer sums."""

    def __init__(self, num_classes: int, num_queries: int, class_weight: float = 1.0, bbox_weight: float = 5.0,
                 giou_weight: float = 2.0, focal_alpha: float = 0.25, focal_gamma: float = 2.0, max_k: int = 4):
        super().__init__()
        self.num_classes = num_classes
        self.weights = {"loss_ce": class_weight, "loss_bbox": bbox_weight, "loss_giou": giou_weight}
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma
        self.stage1 = Stage1Assigner(max_k=max_k)
        self.stage2 = Stage2Assigner(num_queries, max_k=max_k)

    def _losses(self, out, targets: Targets, indices, num_boxes: float, num_classes: int) -> Dict[str, torch.Tensor]:
        logits, boxes = out["pred_logits"], out["pred_boxes"]
        batch = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)])
        src = torch.cat([s for s, _ in indices])
        onehot = torch.zeros_like(logits)
        labels = torch.cat([t["labels"][j] for t, (_, j) in zip(targets, indices)])
        onehot[batch, src, labels] = 1.0
        loss_ce = sigmoid_focal_loss(logits, onehot, self.focal_alpha, self.focal_gamma, reduction="sum") / num_boxes
        matched = boxes[batch, src]
        target = torch.cat([t["boxes"][j] for t, (_, j) in zip(targets, indices)]).to(matched.dtype)
        loss_bbox = (matched - target).abs().sum() / num_boxes
        loss_giou = generalized_box_iou_loss(box_convert(matched, "cxcywh", "xyxy"),
                                             box_convert(target, "cxcywh", "xyxy"), reduction="sum") / num_boxes
        return {"loss_ce": loss_ce, "loss_bbox": loss_bbox, "loss_giou": loss_giou}

    def unweighted(self, outputs, targets: Targets) -> Dict[str, torch.Tensor]:
        num_boxes = _world_mean(sum(len(t["labels"]) for t in targets), outputs["pred_logits"].device)
        gt_boxes = [t["boxes"] for t in targets]
        indices = self.stage2(outputs["init_reference"], gt_boxes, [t["labels"] for t in targets])
        losses = self._losses(outputs, targets, indices, num_boxes, self.num_classes)
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            losses.update({f"{k}_{i}": v for k, v in self._losses(aux, targets, indices, num_boxes,
                                                                 self.num_classes).items()})
        enc = outputs.get("enc_outputs")
        if enc is not None:
            binary = [dict(t, labels=torch.zeros_like(t["labels"])) for t in targets]
            indices = self.stage1(enc["anchors"], gt_boxes)
            losses.update({f"{k}_enc": v for k, v in self._losses(enc, binary, indices, num_boxes, 1).items()})
        return losses

    def forward(self, outputs, targets: Targets) -> Dict[str, torch.Tensor]:
        return {k: v * self.weights[k.rsplit("_", 1)[0] if k not in self.weights else k]
                for k, v in self.unweighted(outputs, targets).items()}


def nms_postprocess(logits: torch.Tensor, boxes_cxcywh: torch.Tensor, sizes: Sequence[Sequence[int]],
                    topk: Optional[int] = 100, nms_thresh: float = 0.7, pre_topk: int = 10000,
                    soft_nms: Optional[str] = None, soft_pre_topk: int = 2000,
                    quad_scale: float = 1.0) -> List[Dict[str, torch.Tensor]]:
    """The released ``NMSPostProcess``: every (query, class) pair is a detection scored by its sigmoid; the best
    ``pre_topk`` (10000) of them, class-wise NMS at ``nms_thresh``, the best ``topk`` kept. Boxes are scaled to
    ``sizes[b]`` = (height, width) and not clipped (as released). ``soft_nms`` ("quad", "linear", "gaussian"):
    class-wise soft-NMS instead over the best ``soft_pre_topk`` (2000), capped at ``topk`` per image (``quad_scale``:
    the released default 1.0 here, 0.5 in its TTA). (The released
    code leaves soft-NMS uncapped: its ``[:num_topk]`` slices the (indices, scores) pair, not the detections, so up
    to 2000 detections an image reach COCO's evaluation, which keeps 100 per class and image: ``topk=None`` does
    that.)"""
    N, Q, K = logits.shape
    prob = logits.sigmoid().flatten(1)
    out = []
    for b in range(N):
        h, w = sizes[b]
        scale = torch.tensor([w, h, w, h], dtype=boxes_cxcywh.dtype, device=boxes_cxcywh.device)
        score = prob[b]
        idx = torch.arange(Q * K, device=logits.device)
        limit = soft_pre_topk if soft_nms else pre_topk
        if Q * K > limit:
            score, idx = score.topk(limit)
        box = box_convert(boxes_cxcywh[b], "cxcywh", "xyxy")[idx // K] * scale
        label = idx % K
        if soft_nms:
            keep, score = batched_soft_nms(box, score, label, nms_thresh, soft_nms, quad_scale=quad_scale)
            keep, score = keep[:topk], score[:topk]  # [:None] keeps all
        else:
            keep = batched_nms(box, score, label, nms_thresh)[:topk]
            score = score[keep]
        out.append({"scores": score, "labels": label[keep], "boxes": box[keep]})
    return out


def batched_soft_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou_threshold: float = 0.7,
                     method: str = "quad", sigma: float = 0.5, quad_scale: float = 1.0, prune: float = 1e-3):
    """Soft-NMS per class (Bodla et al. 2017) as the released ``utils_softnms.batched_soft_nms``: repeatedly take
    the best box and decay every score by its IoU with it: ``linear`` s (1 - IoU) where IoU > the threshold,
    ``quad`` s (1 - IoU) ** quad_scale there (the released "quad": with quad_scale 1 it is linear), ``gaussian``
    s exp(-IoU^2 / sigma) everywhere; boxes whose score is not above ``prune`` are dropped. Classes are kept apart by
    offsetting their boxes, as ``batched_nms`` does. Returns (indices, new scores), in the order taken."""
    from torchvision.ops import box_iou

    if method not in ("quad", "linear", "gaussian"):
        raise ValueError(f"soft-NMS method must be quad, linear or gaussian, got {method!r}")
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device), scores.new_zeros(0)
    b = boxes + (labels.to(boxes) * (boxes.max() + 1))[:, None]
    s = scores.clone()
    idx = torch.arange(len(s), device=s.device)
    keep, kept = [], []
    while s.numel():
        top = int(s.argmax())
        keep.append(idx[top])
        kept.append(s[top])
        iou = box_iou(b[top][None], b)[0]
        if method == "gaussian":
            decay = torch.exp(-(iou * iou) / sigma)
        else:
            over = iou > iou_threshold
            decay = torch.where(over, (1 - iou) ** (quad_scale if method == "quad" else 1.0), torch.ones_like(iou))
        s = s * decay
        alive = s > prune
        alive[top] = False
        b, s, idx = b[alive], s[alive], idx[alive]
    return torch.stack(keep), torch.stack(kept)

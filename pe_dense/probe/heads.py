"""Per-block probe heads trained together on cached features, and their scores (mIoU; RMSE, abs_rel, d1)."""
from __future__ import annotations

import time
from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F

from .cache import FeatureCache


def _miou(conf: torch.Tensor) -> float:
    inter = conf.diag().float()
    union = conf.sum(0).float() + conf.sum(1).float() - inter
    iou = inter[union > 0] / union[union > 0]
    return float(iou.mean() * 100) if iou.numel() else 0.0


def _order(n: int, epoch: int, seed: int) -> List[int]:
    g = torch.Generator().manual_seed(seed * 1000 + epoch)
    return torch.randperm(n, generator=g).tolist()


def train_heads(task: str, blocks: Sequence[int], channels: int, train: FeatureCache, n_train: int,
                num_classes: int = 0, epochs: int = 10, batch: int = 8,
                lr: float = 1e-2, seed: int = 0, max_depth: float = 10.0, progress: bool = True):
    """One head per block, trained together on the cached features (one pass over the files per epoch)."""
    from tqdm import tqdm

    from ..modeling.heads import LinearBinsHead, LinearSegHead
    from ..modeling.losses import gradient_loss, sig_loss

    def head(b):
        torch.manual_seed(seed)  # every block's head starts from the same weights: blocks are compared, not inits
        if task == "seg":
            return LinearSegHead([channels], num_classes)
        return LinearBinsHead([channels], min_depth=1e-3, max_depth=max_depth)

    heads = {b: head(b) for b in blocks}
    opts = {b: torch.optim.AdamW(h.parameters(), lr=lr, weight_decay=1e-4) for b, h in heads.items()}
    steps = epochs * ((n_train + batch - 1) // batch)
    scheds = {b: torch.optim.lr_scheduler.CosineAnnealingLR(o, max(1, steps)) for b, o in opts.items()}
    seconds = {b: 0.0 for b in blocks}
    bar = tqdm(total=steps, desc=f"{task} probes ({len(blocks)} blocks)", unit="step", disable=not progress)
    for epoch in range(epochs):
        order = _order(n_train, epoch, seed)
        for s in range(0, n_train, batch):
            idx = order[s: s + batch]
            target = torch.stack([train.label(i) for i in idx])
            for b in blocks:  # one block of one batch in memory at a time (the files are read per tensor)
                t0 = time.time()
                h = heads[b].train()
                x = torch.stack([train.read(i, [b])[b] for i in idx])
                out = F.interpolate(h([x]), size=target.shape[-2:], mode="bilinear", align_corners=False)
                if task == "seg":
                    loss = F.cross_entropy(out, target, ignore_index=-1)
                else:
                    gt = target[:, None]
                    loss = sig_loss(out, gt, max_depth) + 0.5 * gradient_loss(out, gt, max_depth)
                opts[b].zero_grad()
                loss.backward()
                opts[b].step()
                scheds[b].step()
                seconds[b] += time.time() - t0
            bar.update(1)
    bar.close()
    return heads, seconds


@torch.no_grad()
def evaluate_heads(task: str, heads: dict, cache: FeatureCache, n: int, num_classes: int = 0,
                   max_depth: float = 10.0) -> Dict[int, dict]:
    blocks = list(heads)
    conf = {b: torch.zeros(num_classes, num_classes, dtype=torch.long) for b in blocks}
    sums = {b: dict(se=0.0, rel=0.0, d1=0.0, n=0) for b in blocks}
    for i in range(n):
        target = cache.label(i)
        for b in blocks:  # one block of one image in memory at a time
            out = F.interpolate(heads[b].eval()([cache.read(i, [b])[b][None]]), size=target.shape[-2:], mode="bilinear",
                                align_corners=False)[0]
            if task == "seg":
                pred, keep = out.argmax(0), target >= 0
                conf[b] += torch.bincount(target[keep] * num_classes + pred[keep],
                                          minlength=num_classes ** 2).view(num_classes, num_classes)
            else:
                keep = (target > 0) & (target <= max_depth)
                p, g = out[0][keep].clamp_min(1e-3), target[keep]
                s = sums[b]
                s["se"] += float(((p - g) ** 2).sum())
                s["rel"] += float(((p - g).abs() / g).sum())
                s["d1"] += float((torch.maximum(p / g, g / p) < 1.25).sum())
                s["n"] += int(keep.sum())
    if task == "seg":
        return {b: {"mIoU": _miou(conf[b]), "aAcc": float(conf[b].diag().sum() / conf[b].sum().clamp_min(1) * 100)}
                for b in blocks}
    return {b: {"rmse": (s["se"] / max(1, s["n"])) ** 0.5, "abs_rel": s["rel"] / max(1, s["n"]),
                "d1": s["d1"] / max(1, s["n"])} for b, s in sums.items()}

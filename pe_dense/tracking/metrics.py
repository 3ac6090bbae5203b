"""DAVIS J&F, as davis2017-evaluation defines it (Perazzi et al. 2016; Pont-Tuset et al. 2017).

J: region similarity, the IoU of the masks (1 when both are empty).
F: contour accuracy, the F-measure of the mask boundaries matched within a tolerance of ``bound_th`` x the image
diagonal (``bound_th >= 1``: that many pixels), boundaries from ``seg2bmap`` and matched by dilation with a disk.
Statistics per object: mean, recall (fraction of frames above 0.5) and decay (mean of the first quarter of the frames
minus mean of the last quarter). Semi-supervised evaluation drops the first and the last frame of each sequence.
"""
from __future__ import annotations

import math
import warnings
from typing import Optional, Tuple

import cv2
import numpy as np

from ..errors import PEDenseError


def _stack(a) -> np.ndarray:
    a = np.asarray(a).astype(bool)
    if a.ndim not in (2, 3):
        raise PEDenseError(f"masks must be (H, W) or (T, H, W), got shape {a.shape}")
    return a


def j_measure(pred, gt, void: Optional[np.ndarray] = None) -> np.ndarray:
    """Region IoU per frame: (T,) for (T, H, W) inputs, a 0-d array for (H, W)."""
    pred, gt = _stack(pred), _stack(gt)
    if pred.shape != gt.shape:
        raise PEDenseError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    if void is not None:
        keep = ~_stack(void)
        pred, gt = pred & keep, gt & keep
    inter = (pred & gt).sum(axis=(-2, -1))
    union = (pred | gt).sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        j = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
    return np.asarray(j, dtype=np.float64)


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundary of a binary mask (davis2017-evaluation's ``_seg2bmap`` at the mask's size)."""
    seg = seg.astype(bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = seg ^ e | seg ^ s | seg ^ se
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = 0
    return b


def disk(radius: float) -> np.ndarray:
    """skimage.morphology.disk: the points with x^2 + y^2 <= r^2."""
    r = int(radius)
    y, x = np.ogrid[-r: r + 1, -r: r + 1]
    return (x * x + y * y <= radius * radius).astype(np.uint8)


def _f_frame(pred: np.ndarray, gt: np.ndarray, bound_th: float, void: Optional[np.ndarray]) -> float:
    bound_pix = bound_th if bound_th >= 1 else math.ceil(bound_th * math.hypot(*pred.shape))
    if void is not None:
        pred, gt = pred & ~void, gt & ~void
    fg_b, gt_b = seg2bmap(pred), seg2bmap(gt)
    se = disk(bound_pix)
    fg_dil = cv2.dilate(fg_b.astype(np.uint8), se)
    gt_dil = cv2.dilate(gt_b.astype(np.uint8), se)
    n_fg, n_gt = fg_b.sum(), gt_b.sum()
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision = float((fg_b * gt_dil).sum()) / n_fg
        recall = float((gt_b * fg_dil).sum()) / n_gt
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def f_measure(pred, gt, bound_th: float = 0.008, void: Optional[np.ndarray] = None) -> np.ndarray:
    """Boundary F-measure per frame: (T,) for (T, H, W) inputs, a 0-d array for (H, W)."""
    pred, gt = _stack(pred), _stack(gt)
    if pred.shape != gt.shape:
        raise PEDenseError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    single = pred.ndim == 2
    if single:
        pred, gt = pred[None], gt[None]
        void = None if void is None else _stack(void)[None]
    out = np.array([_f_frame(p, g, bound_th, None if void is None else void[i])
                    for i, (p, g) in enumerate(zip(pred, gt))], dtype=np.float64)
    return out[0] if single else out


def statistics(values: np.ndarray) -> Tuple[float, float, float]:
    """(mean, recall, decay) of per-frame values, as davis2017-evaluation's ``db_statistics``."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(np.nanmean(values))
    recall = float(np.nanmean(values > 0.5))
    ids = (np.round(np.linspace(1, len(values), 5) + 1e-10) - 1).astype(int)
    bins = [values[ids[i]: ids[i + 1] + 1] for i in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        decay = float(np.nanmean(bins[0]) - np.nanmean(bins[3]))
    return mean, recall, decay


def evaluate_sequence(pred_ids: np.ndarray, gt_ids: np.ndarray, void: Optional[np.ndarray] = None,
                      num_objects: Optional[int] = None, bound_th: float = 0.008):
    """Per-object J and F of one sequence, first and last frame excluded (semi-supervised protocol).

    pred_ids, gt_ids: (T, H, W) integer label maps (0 background, 1..K objects). Returns a list, one dict per object,
    with the per-frame ``J`` and ``F`` arrays and their statistics.
    """
    pred_ids, gt_ids = np.asarray(pred_ids), np.asarray(gt_ids)
    if pred_ids.shape != gt_ids.shape:
        raise PEDenseError(f"prediction {pred_ids.shape} and ground truth {gt_ids.shape} differ in shape")
    k = int(num_objects if num_objects is not None else gt_ids.max())
    if pred_ids.max() > k:
        raise PEDenseError(f"prediction has object id {int(pred_ids.max())} but the sequence has {k} objects")
    sl = slice(1, -1) if len(gt_ids) > 2 else slice(None)
    v = None if void is None else np.asarray(void)[sl]
    rows = []
    for obj in range(1, k + 1):
        p, g = pred_ids[sl] == obj, gt_ids[sl] == obj
        j, f = j_measure(p, g, v), f_measure(p, g, bound_th, v)
        jm, jr, jd = statistics(j)
        fm, fr, fd = statistics(f)
        rows.append(dict(object=obj, J=j, F=f, J_mean=jm, J_recall=jr, J_decay=jd, F_mean=fm, F_recall=fr,
                         F_decay=fd))
    return rows

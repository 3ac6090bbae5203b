"""Pictures of dense predictions at any size, drawn a band of rows at a time: the same pictures as MMSeg's
``SegLocalVisualizer`` (``_draw_sem_seg``: the class colours blended over the image, each class's name in a box at
the middle of its fullest row; ``_draw_depth_map``: the image above the depth map's jet colours), without its
full-size float64 blend and its per-class sort of every pixel's coordinates in Python lists (gigabytes and minutes
at 12 megapixels). Working memory: one band, whatever the image's size.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

BAND_PIXELS = 1 << 20  # pixels per band of rows


def _bands(h: int, w: int):
    step = max(1, BAND_PIXELS // max(w, 1))
    for y in range(0, h, step):
        yield y, min(y + step, h)


def _values(labels: np.ndarray, num_classes: int) -> int:
    """How many label values a colour table needs: every class, and every value the labels' type holds up to 256
    (labels past 256 classes come as uint16)."""
    return max(256, num_classes, int(labels.max()) + 1 if labels.size else 0)


def _lut(palette: Sequence[Sequence[int]], num_classes: int, n: int) -> np.ndarray:
    """Colour per label value (n x 3 uint8): the palette's for the classes, black for anything else."""
    lut = np.zeros((n, 3), np.uint8)
    for i in range(min(num_classes, len(palette), n)):
        lut[i] = palette[i]
    return lut


def _label_boxes(labels: np.ndarray, classes: Sequence[str], palette, n: int) -> List[Tuple]:
    """MMSeg's class-name boxes: for each class present (highest index first), where ``_get_center_loc`` puts it
    (the first of its rows with the most pixels, at that row's middle pixel of the class), found a band at a time."""
    h, w = labels.shape
    counts = np.zeros((h, n), np.int64)  # pixels of each label value in each row
    for y0, y1 in _bands(h, w):
        band = labels[y0:y1].astype(np.int64) + (np.arange(y1 - y0)[:, None] * n)
        counts[y0:y1] = np.bincount(band.ravel(), minlength=(y1 - y0) * n).reshape(y1 - y0, n)
    present = [c for c in np.flatnonzero(counts.sum(0))[::-1] if c < len(classes)]
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, min(h, w) / (25 / 0.05)
    thick = 1 if h < 300 or w < 300 else 2
    boxes = []
    for c in present:
        y = int(np.argmax(counts[:, c]))
        xs = np.flatnonzero(labels[y] == c)
        loc = (int(xs[len(xs) // 2]), y)
        (tw, th), base = cv2.getTextSize(classes[c], font, scale, thick)
        boxes.append((loc, classes[c], tuple(int(v) for v in palette[c]), tw, th, base, font, scale, thick))
    return boxes


def _draw_boxes(mask: np.ndarray, boxes, x0: int, y0: int):
    """MMSeg's drawing of the boxes, in its order, on the part of the colour mask at (x0, y0)."""
    for (lx, ly), text, color, tw, th, base, font, scale, thick in boxes:
        lx, ly = lx - x0, ly - y0
        cv2.rectangle(mask, (lx, ly), (lx + tw + base, ly + th + base), color, -1)
        cv2.rectangle(mask, (lx, ly), (lx + tw + base, ly + th + base), (0, 0, 0), thick)
        cv2.putText(mask, text, (lx, ly + th), font, scale, (255, 255, 255), thick, 2)


def seg_overlay(rgb: np.ndarray, labels: np.ndarray, classes: Sequence[str],
                palette: Optional[Sequence[Sequence[int]]] = None, alpha: float = 0.5,
                with_labels: bool = True) -> np.ndarray:
    """MMSeg's ``SegLocalVisualizer._draw_sem_seg`` picture (H x W x 3 uint8) of ``labels`` (H x W, class per
    pixel) over ``rgb``, the same bytes, a band at a time."""
    h, w = labels.shape
    if rgb.shape[:2] != (h, w):
        raise ValueError(f"seg_overlay: image {rgb.shape[:2]} and labels {(h, w)} differ in size")
    if palette is None:
        rng = np.random.RandomState(42)  # a fixed random colour per class when none is given
        palette = rng.randint(0, 255, size=(len(classes), 3)).tolist()
    n = _values(labels, len(classes))
    lut = _lut(palette, len(classes), n)
    out = np.empty_like(rgb)
    for y0, y1 in _bands(h, w):
        out[y0:y1] = (rgb[y0:y1] * (1 - alpha) + lut[labels[y0:y1]] * alpha).astype(np.uint8)
    if not with_labels:
        return out
    boxes = _label_boxes(labels, classes, palette, n)
    for (lx, ly), _, _, tw, th, base, _, _, thick in boxes:
        # the box's part of the picture, redrawn with every box (others may overlap it), in mmseg's order
        m = th + base + 2 * thick + 2
        x0, y0, x1, y1 = max(lx - m, 0), max(ly - m, 0), min(lx + tw + base + m, w), min(ly + th + base + m, h)
        if x0 >= x1 or y0 >= y1:
            continue
        mask = lut[labels[y0:y1, x0:x1]]
        _draw_boxes(mask, boxes, x0, y0)
        out[y0:y1, x0:x1] = (rgb[y0:y1, x0:x1] * (1 - alpha) + mask * alpha).astype(np.uint8)
    return out


def depth_colors(depth: np.ndarray) -> np.ndarray:
    """mmengine's ``convert_overlay_heatmap`` of a depth map (``cv2.normalize`` min..max -> 0..255, jet colours,
    RGB), a band at a time: each band is normalized by OpenCV itself with one extra row holding the whole map's
    minimum and maximum, so its scale and shift (and every pixel) are the whole map's."""
    depth = np.asarray(depth, np.float32)
    h, w = depth.shape
    ends = np.full((1, w), depth.min(), np.float32)
    ends[0, -1] = depth.max()
    out = np.empty((h, w, 3), np.uint8)
    for y0, y1 in _bands(h, w):
        norm = cv2.normalize(np.vstack([depth[y0:y1], ends]), None, 0, 255, cv2.NORM_MINMAX)[:-1]
        out[y0:y1] = cv2.cvtColor(cv2.applyColorMap(norm.astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return out


def depth_picture(rgb: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """MMSeg's ``SegLocalVisualizer._draw_depth_map`` picture: the image above its depth map's colours (2H x W x 3)."""
    h, w = depth.shape
    if rgb.shape[:2] != (h, w):
        raise ValueError(f"depth_picture: image {rgb.shape[:2]} and depth {(h, w)} differ in size")
    out = np.empty((2 * h, w, 3), np.uint8)
    out[:h] = rgb
    out[h:] = depth_colors(depth)
    return out

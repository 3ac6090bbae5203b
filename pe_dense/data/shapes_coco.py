"""The embedded default for detection: a small generated COCO-format dataset (no Detectron2 import).

Images of coloured circles, boxes and triangles on a textured background; instance boxes and polygon masks are
known exactly (polygons are what was drawn; occluded parts are not subtracted, objects do not overlap).
"""
from __future__ import annotations

import json
import math
import os
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image, ImageDraw

from .generated import SHAPE_COLORS, generate_once

CATEGORIES = [{"id": 1, "name": "circle"}, {"id": 2, "name": "box"}, {"id": 3, "name": "triangle"}]
PALETTE = SHAPE_COLORS


def _polygon(kind: int, cx: float, cy: float, r: float) -> List[Tuple[float, float]]:
    if kind == 1:  # circle, 24-gon
        return [(cx + r * math.cos(2 * math.pi * i / 24), cy + r * math.sin(2 * math.pi * i / 24)) for i in range(24)]
    if kind == 2:
        return [(cx - r, cy - 0.7 * r), (cx + r, cy - 0.7 * r), (cx + r, cy + 0.7 * r), (cx - r, cy + 0.7 * r)]
    return [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]


def _area(poly) -> float:
    x, y = np.array(poly).T
    return float(0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def make_image(rng, size: int, max_objects: int = 4):
    yy, xx = np.mgrid[0:size, 0:size]
    base = rng.uniform(70, 180, size=3)
    bg = (base + 25 * np.sin(xx[..., None] / rng.uniform(8, 20) + rng.uniform(0, 6, 3))
          + rng.normal(0, 6, (size, size, 3)))
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    anns, placed = [], []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _try in range(20):
            r = rng.uniform(0.08, 0.18) * size
            cx, cy = rng.uniform(r + 1, size - r - 1, size=2)
            if all(math.hypot(cx - px, cy - py) > r + pr + 2 for px, py, pr in placed):
                break
        else:
            continue
        placed.append((cx, cy, r))
        kind = int(rng.integers(1, 4))
        poly = _polygon(kind, cx, cy, r)
        draw.polygon(poly, fill=PALETTE[int(rng.integers(len(PALETTE)))])
        xs, ys = zip(*poly)
        x0, y0, x1, y1 = min(xs), min(ys), max(xs), max(ys)
        anns.append(dict(category_id=kind, bbox=[x0, y0, x1 - x0, y1 - y0], area=_area(poly), iscrowd=0,
                         segmentation=[[round(v, 2) for p in poly for v in p]]))
    return img, anns


def make_shapes_coco(root: str, splits: Dict[str, int] = None, size: int = 256,
                     seed: int = 0) -> Dict[str, Tuple[str, str]]:
    """Writes (once) ``root/{split}/*.jpg`` and ``root/annotations/{split}.json``; returns {split: (json, images)}."""
    splits = splits or {"train": 64, "val": 16}
    want = json.dumps([splits, size, seed])
    out = {s: (os.path.join(root, "annotations", f"{s}.json"), os.path.join(root, s)) for s in splits}

    def write(root):
        os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
        for si, (split, n) in enumerate(splits.items()):
            rng = np.random.default_rng(seed + 1000 * si)
            os.makedirs(os.path.join(root, split), exist_ok=True)
            images, annotations = [], []
            for i in range(n):
                img, anns = make_image(rng, size)
                name = f"{i:05d}.jpg"
                img.save(os.path.join(root, split, name), quality=95)
                images.append(dict(id=i + 1, file_name=name, height=size, width=size))
                for a in anns:
                    annotations.append(dict(a, id=len(annotations) + 1, image_id=i + 1))
            with open(os.path.join(root, "annotations", f"{split}.json"), "w") as f:
                json.dump(dict(images=images, annotations=annotations, categories=CATEGORIES), f)

    generate_once(root, want, write)
    return out

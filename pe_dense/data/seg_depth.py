"""Embedded defaults for MMSeg, generated deterministically (no binaries in git).

- Segmentation, ADE20K layout (``images/{training,validation}/*.jpg``, ``annotations/...*.png``; label 0 =
  "other", ignored with ``reduce_zero_label``): reddish circles, greenish boxes, bluish triangles on a textured
  background (colour and shape both tell the class, so a small model learns it in minutes);
  classes background, circle, box, triangle (labels 1..4 on disk).
- Depth, NYUv2 layout (``images/{train,test}/SCENE_NNNNN.jpg``, ``annotations/...png``: uint16 depth in
  millimetres): a floor plane receding to a back wall at 9 m, and fronto-parallel boxes standing on the floor at
  known depths; colours fade with distance (atmospheric cue), so depth is learnable from the image.
"""
from __future__ import annotations

import json
import os
from typing import Tuple

import numpy as np
from PIL import Image, ImageDraw

from .generated import SHAPE_COLORS, generate_once

SHAPES_CLASSES = ("background", "circle", "box", "triangle")
SHAPES_PALETTE = [[120, 120, 120]] + [list(c) for c in SHAPE_COLORS[:3]]  # background, then the shapes


def make_ade_shapes(root: str, n_train: int = 48, n_val: int = 12, size: int = 128, seed: int = 0) -> str:
    want = json.dumps(["ade", 2, n_train, n_val, size, seed])

    def write(root):
        rng = np.random.default_rng(seed)
        colors = [(220, 50, 50), (50, 170, 70), (50, 90, 220), (230, 190, 40), (190, 60, 190)]
        for split, n in (("training", n_train), ("validation", n_val)):
            os.makedirs(os.path.join(root, "images", split), exist_ok=True)
            os.makedirs(os.path.join(root, "annotations", split), exist_ok=True)
            for i in range(n):
                yy, xx = np.mgrid[0:size, 0:size]
                base = rng.uniform(80, 170, size=3)
                bg = (base + 20 * np.sin(xx[..., None] / rng.uniform(5, 12) + yy[..., None] / 9.0)
                      + rng.normal(0, 5, (size, size, 3)))
                img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
                lab = Image.new("L", (size, size), 1)
                di, dl = ImageDraw.Draw(img), ImageDraw.Draw(lab)
                for _ in range(int(rng.integers(1, 4))):
                    k = int(rng.integers(1, 4))  # 1 circle, 2 box, 3 triangle
                    r = rng.uniform(0.1, 0.22) * size
                    cx, cy = rng.uniform(r, size - r, size=2)
                    col = tuple(int(c + rng.integers(-20, 21)) for c in colors[k - 1])  # colour-coded classes
                    if k == 1:
                        shape = [cx - r, cy - r, cx + r, cy + r]
                        di.ellipse(shape, fill=col)
                        dl.ellipse(shape, fill=k + 1)
                    elif k == 2:
                        shape = [cx - r, cy - 0.7 * r, cx + r, cy + 0.7 * r]
                        di.rectangle(shape, fill=col)
                        dl.rectangle(shape, fill=k + 1)
                    else:
                        shape = [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
                        di.polygon(shape, fill=col)
                        dl.polygon(shape, fill=k + 1)
                img.save(os.path.join(root, "images", split, f"shapes_{i:05d}.jpg"), quality=95)
                lab.save(os.path.join(root, "annotations", split, f"shapes_{i:05d}.png"))

    generate_once(root, want, write)
    return root


def depth_scene(rng, size: Tuple[int, int]):
    """(image uint8 HxWx3, depth float32 metres HxW)."""
    h, w = size
    horizon = int(0.35 * h)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    depth = np.full((h, w), 9.0, np.float32)
    below = yy > horizon
    depth[below] = np.clip(0.9 * h * 1.0 / (yy[below] - horizon + 1e-3) * 0.9, 0.6, 9.0)
    wall = np.array([150, 140, 120], np.float32) * rng.uniform(0.8, 1.2, 3)
    floor = np.array([110, 90, 70], np.float32) * rng.uniform(0.8, 1.2, 3)
    tex = 12 * np.sin(xx / 6.0) * np.sin(yy / 5.0)
    color = np.where(below[..., None], floor, wall) + tex[..., None]
    for _ in range(int(rng.integers(1, 4))):
        d = rng.uniform(1.2, 6.0)
        row = horizon + 0.81 * h / d  # where the floor is at depth d
        bh, bw = 0.5 * h / d * rng.uniform(0.8, 1.4), 0.4 * w / d * rng.uniform(0.7, 1.5)
        cx = rng.uniform(0, w)
        y0, y1 = int(max(0, row - bh)), int(min(h, row))
        x0, x1 = int(max(0, cx - bw / 2)), int(min(w, cx + bw / 2))
        if y1 <= y0 or x1 <= x0:
            continue
        closer = depth[y0:y1, x0:x1] > d
        depth[y0:y1, x0:x1][closer] = d
        c = np.array([rng.uniform(60, 230) for _ in range(3)], np.float32)
        color[y0:y1, x0:x1][closer] = c
    fog = np.exp(-depth / 6.0)[..., None]
    img = color * fog + 200 * (1 - fog) + rng.normal(0, 3, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8), depth


def make_nyu_planes(root: str, n_train: int = 48, n_test: int = 12, size: Tuple[int, int] = (120, 160),
                    seed: int = 0) -> str:
    want = json.dumps(["nyu", n_train, n_test, list(size), seed])

    def write(root):
        rng = np.random.default_rng(seed)
        for split, n in (("train", n_train), ("test", n_test)):
            os.makedirs(os.path.join(root, "images", split), exist_ok=True)
            os.makedirs(os.path.join(root, "annotations", split), exist_ok=True)
            for i in range(n):
                img, depth = depth_scene(rng, size)
                name = f"{'bedroom' if i % 2 else 'kitchen'}_{i:05d}"
                Image.fromarray(img).save(os.path.join(root, "images", split, name + ".jpg"), quality=95)
                Image.fromarray((depth * 1000).round().astype(np.uint16)).save(
                    os.path.join(root, "annotations", split, name + ".png"))

    generate_once(root, want, write)
    return root

"""The embedded default for tracking: a small DAVIS-format set generated deterministically.

Each sequence: a static textured background and 2-3 textured objects (disc, box, triangle) moving on straight
paths that bounce off the borders; later objects are drawn on top, so objects occlude one another. The masks are
known exactly (what was drawn last at each pixel).
"""
from __future__ import annotations

import os
from typing import Tuple

import numpy as np
from PIL import Image

from ..data.generated import generate_once
from .davis import write_annotation

COLORS = [(225, 50, 45), (40, 170, 70), (45, 85, 225), (235, 195, 35)]


def _background(rng, h, w):
    low = rng.uniform(60, 200, size=(6, 8, 3)).astype(np.float32)
    bg = np.array(Image.fromarray(low.astype(np.uint8)).resize((w, h), Image.BICUBIC), dtype=np.float32)
    return bg + rng.normal(0, 8, size=(h, w, 3))


def _shape_mask(kind, cy, cx, r, h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    if kind == 0:
        return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    if kind == 1:
        return (np.abs(yy - cy) <= 0.7 * r) & (np.abs(xx - cx) <= r)
    return (yy >= cy - r) & (yy <= cy + r) & (np.abs(xx - cx) <= (yy - (cy - r)) / 2)


def make_sequence(root: str, name: str, seed: int, frames: int, size: Tuple[int, int]):
    h, w = size
    rng = np.random.default_rng(seed)
    bg = _background(rng, h, w)
    k = 2 + seed % 2
    objs = []
    for i in range(k):
        r = rng.uniform(0.12, 0.2) * h
        pos = np.array([rng.uniform(r, h - r), rng.uniform(r, w - r)])
        vel = rng.uniform(-1, 1, size=2)
        vel = vel / np.linalg.norm(vel) * rng.uniform(0.025, 0.045) * w
        stripes = rng.uniform(6, 14)
        objs.append(dict(kind=i % 3, r=r, pos=pos, vel=vel, color=np.array(COLORS[i % 4], np.float32), s=stripes))
    fdir = os.path.join(root, "JPEGImages", "480p", name)
    adir = os.path.join(root, "Annotations", "480p", name)
    os.makedirs(fdir, exist_ok=True)
    os.makedirs(adir, exist_ok=True)
    yy, xx = np.mgrid[0:h, 0:w]
    for t in range(frames):
        img = bg.copy()
        ids = np.zeros((h, w), np.uint8)
        for i, o in enumerate(objs, start=1):
            cy, cx = o["pos"]
            m = _shape_mask(o["kind"], cy, cx, o["r"], h, w)
            texture = 0.8 + 0.2 * np.sin((xx - cx + yy - cy) / o["s"])[..., None]
            img[m] = (o["color"] * texture)[m]
            ids[m] = i
            o["pos"] = o["pos"] + o["vel"]
            for d, lim in ((0, h), (1, w)):
                if not o["r"] <= o["pos"][d] <= lim - o["r"]:
                    o["vel"][d] *= -1
                    o["pos"][d] = np.clip(o["pos"][d], o["r"], lim - o["r"])
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(os.path.join(fdir, f"{t:05d}.jpg"), quality=95)
        write_annotation(os.path.join(adir, f"{t:05d}.png"), ids)


def make_davis(root: str, num_sequences: int = 2, frames: int = 12, size: Tuple[int, int] = (240, 320),
               seed: int = 0) -> str:
    """Writes (once) a DAVIS-2017-format folder at ``root`` and returns it."""
    want = f"davis {num_sequences} {frames} {size} {seed}"

    def write(root):
        names = [f"synthetic-{i:02d}" for i in range(num_sequences)]
        for i, n in enumerate(names):
            make_sequence(root, n, seed + i, frames, size)
        os.makedirs(os.path.join(root, "ImageSets", "2017"), exist_ok=True)
        for split in ("val", "train"):
            with open(os.path.join(root, "ImageSets", "2017", f"{split}.txt"), "w") as f:
                f.write("\n".join(names) + "\n")

    generate_once(root, want, write)
    return root

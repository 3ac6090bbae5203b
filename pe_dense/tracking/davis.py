"""DAVIS-2017 folders: ``JPEGImages/480p/SEQ/00000.jpg``, ``Annotations/480p/SEQ/00000.png`` (palette PNGs, ids
0..K, 255 = void), ``ImageSets/2017/{val,train}.txt``."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
from PIL import Image

VOID = 255


class DavisError(ValueError):
    """A DAVIS folder, sequence or annotation that cannot be used, and why."""


def davis_palette() -> List[int]:
    """The DAVIS / PASCAL VOC colour map (id -> RGB), flattened for ``Image.putpalette``."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


@dataclass
class Sequence:
    name: str
    frames: List[str]  # jpg paths, sorted
    annotations: List[Optional[str]]  # png path per frame, None where absent

    @property
    def first_annotation(self) -> str:
        return self.annotations[0]


def list_sequences(root: str, split: str = "val", resolution: str = "480p") -> List[str]:
    if not os.path.isdir(root):
        raise DavisError(f"DAVIS root not found: {root} (expected JPEGImages/, Annotations/, ImageSets/ inside)")
    path = os.path.join(root, "ImageSets", "2017", f"{split}.txt")
    if not os.path.isfile(path):
        raise DavisError(f"split file not found: {path} (use --split with one of the files in ImageSets/2017/)")
    with open(path) as f:
        names = [ln.strip() for ln in f if ln.strip()]
    if not names:
        raise DavisError(f"{path} lists no sequence")
    return names


def load_sequence(root: str, name: str, resolution: str = "480p") -> Sequence:
    fdir = os.path.join(root, "JPEGImages", resolution, name)
    adir = os.path.join(root, "Annotations", resolution, name)
    if not os.path.isdir(fdir):
        raise DavisError(f"sequence {name}: frame folder missing: {fdir}")
    frames = sorted(f for f in os.listdir(fdir) if f.lower().endswith((".jpg", ".jpeg", ".png")))
    if not frames:
        raise DavisError(f"sequence {name}: no frames in {fdir}")
    stems = [os.path.splitext(f)[0] for f in frames]
    if stems != [f"{i:05d}" for i in range(len(frames))]:
        missing = sorted(set(f"{i:05d}" for i in range(int(max(stems)) + 1)) - set(stems)) if all(
            s.isdigit() for s in stems) else []
        raise DavisError(f"sequence {name}: frames must be numbered 00000, 00001, ... without gaps"
                         + (f"; missing {', '.join(missing[:10])}" if missing else f"; found {stems[:5]}..."))
    anns = [os.path.join(adir, s + ".png") for s in stems]
    anns = [a if os.path.isfile(a) else None for a in anns]
    if anns[0] is None:
        raise DavisError(f"sequence {name}: the first-frame annotation {os.path.join(adir, '00000.png')} is missing "
                         f"(semi-supervised propagation starts from it)")
    return Sequence(name, [os.path.join(fdir, f) for f in frames], anns)


def read_annotation(path: str, num_objects: Optional[int] = None) -> np.ndarray:
    """A palette PNG -> (H, W) uint8 ids. Ids must be 0..K (255 = void); gaps or ids above K are an error."""
    img = Image.open(path)
    if img.mode != "P":
        raise DavisError(f"{path}: annotation must be a palette (mode 'P') PNG of object ids, got mode {img.mode!r}")
    ids = np.array(img, dtype=np.uint8)
    present = sorted(set(np.unique(ids).tolist()) - {0, VOID})
    if num_objects is not None:
        bad = [i for i in present if i > num_objects]
        if bad:
            raise DavisError(f"{path}: unknown object id(s) {bad}; the first frame defines ids 1..{num_objects}")
    elif present != list(range(1, len(present) + 1)):
        raise DavisError(f"{path}: object ids must be 1..K without gaps, found {present}")
    return ids


def write_annotation(path: str, ids: np.ndarray, palette: Optional[List[int]] = None):
    img = Image.fromarray(ids.astype(np.uint8), mode="P")
    img.putpalette(palette or davis_palette())
    img.save(path)


def image_size(path: str) -> Tuple[int, int]:
    with Image.open(path) as im:
        return im.size[1], im.size[0]

"""DAVIS-2017 folders: ``JPEGImages/480p/SEQ/00000.jpg``, ``Annotations/480p/SEQ/00000.png`` (palette PNGs, ids
0..K, 255 = void), ``ImageSets/2017/{val,train}.txt``."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
from PIL import Image

from ..errors import PEDenseError
from ..io import error_summary

VOID = 255


class DavisError(PEDenseError):
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
    try:
        img = Image.open(path)
        img.load()
    except (OSError, ValueError) as e:
        raise DavisError(f"{path}: cannot read this annotation ({error_summary(e)})") from None
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


def image_size_checked(path: str, what: str) -> Tuple[int, int]:
    """(H, W) from the header, as ``read_rgb`` orients it; an unreadable or non-image file is a ``DavisError``
    naming it."""
    from ..data.images import oriented_size

    try:
        return oriented_size(path)
    except (OSError, ValueError) as e:
        raise DavisError(f"{path}: cannot read this {what} ({error_summary(e)}); replace or remove "
                         f"it") from None


def num_objects(first: np.ndarray, name: str) -> int:
    """K of a first-frame annotation; none is a ``DavisError``."""
    k = int(first[first != VOID].max()) if (first[first != VOID] > 0).any() else 0
    if k == 0:
        raise DavisError(f"sequence {name}: the first-frame annotation has no object (all background); "
                         f"nothing to propagate - remove the sequence from the split or fix its annotation")
    return k


def check_sequence(seq: "Sequence") -> int:
    """Everything a sequence needs, checked before any sequence is processed: the first-frame annotation (palette,
    ids 1..K, at least one object), every later annotation (palette, ids <= K), every frame readable, and every frame
    and annotation of one size. Returns K."""
    first = read_annotation(seq.first_annotation)
    k = num_objects(first, seq.name)
    size = first.shape
    for path in seq.frames:
        hw = image_size_checked(path, "frame")
        if hw != size:
            raise DavisError(f"{path}: frame of {hw[0]}x{hw[1]} but the first-frame annotation is "
                             f"{size[0]}x{size[1]}: all frames and annotations of a sequence must have one size")
    for path in seq.annotations[1:]:
        if path is None:
            continue
        ids = read_annotation(path, k)
        if ids.shape != size:
            raise DavisError(f"{path}: annotation of {ids.shape[0]}x{ids.shape[1]} but the first-frame annotation is "
                             f"{size[0]}x{size[1]}")
    return k


def write_annotation(path: str, ids: np.ndarray, palette: Optional[List[int]] = None):
    img = Image.fromarray(ids.astype(np.uint8), mode="P")
    img.putpalette(palette or davis_palette())
    img.save(path)



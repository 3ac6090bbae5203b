"""Tracking on any folder of frames with one annotated first frame (``pe-dense track --frames DIR --mask PNG``).

The mask may be a palette PNG (DAVIS-style), a single-channel PNG of instance ids (8 or 16 bit) or a colour PNG
(each colour other than black one object). Objects are numbered 1..K in the order of their value (or colour) and
written back as palette PNGs in the mask's own colours; ``objects.json`` maps each id to the value or colour it came
from. Outputs: ``OUT/masks/FRAME.png`` for every frame, ``OUT/overlay.gif`` and ``OUT/overlay.mp4``.
"""
from __future__ import annotations

import os
import re
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data.images import IMAGE_EXTS
from ..io import error_summary, write_folder_atomic, write_json
from .davis import VOID, DavisError, davis_palette, image_size_checked, write_annotation
from .evaluate import overlay, read_frame, working_size
from .propagation import PropagationConfig, finalize, run_propagation


def _natural(name: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def list_frames(folder: str) -> List[str]:
    """The folder's images in natural order (frame2 before frame10)."""
    if not os.path.isdir(folder):
        raise DavisError(f"--frames {folder}: folder not found")
    frames = sorted((f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTS)), key=_natural)
    if len(frames) < 2:
        raise DavisError(f"--frames {folder}: {len(frames)} image(s) ({', '.join(IMAGE_EXTS)}); tracking needs at "
                         f"least two frames")
    return [os.path.join(folder, f) for f in frames]


def read_user_mask(path: str) -> Tuple[np.ndarray, List[int], Dict[int, object]]:
    """Any first-frame mask -> (ids (H, W) uint8 with 0 background and 1..K objects, palette for writing, {id: the
    value or RGB colour it came from}). Palette PNGs keep their palette; 255 in a palette or id PNG is void."""
    try:
        img = Image.open(path)
        img.load()
    except FileNotFoundError:
        raise DavisError(f"--mask {path}: file not found") from None
    except (OSError, ValueError) as e:
        raise DavisError(f"--mask {path}: cannot read it ({error_summary(e)})") from None
    palette = img.getpalette() if img.mode == "P" else None
    if img.mode in ("RGB", "RGBA", "LA"):
        arr = np.asarray(img.convert("RGBA"))
        rgb = arr[..., :3].astype(np.int64)
        code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        code[(arr[..., 3] == 0) | (code == 0)] = 0
        values = sorted(set(np.unique(code).tolist()) - {0})
        void = np.zeros(code.shape, bool)
        source = {i + 1: [(v >> 16) & 255, (v >> 8) & 255, v & 255] for i, v in enumerate(values)}
        palette = [0, 0, 0] + [c for i in range(1, 256) for c in source.get(i, davis_palette()[3 * i:3 * i + 3])]
    elif img.mode in ("P", "L", "I", "I;16", "I;16B", "I;16L"):
        code = np.asarray(img).astype(np.int64)
        void = code == VOID if img.mode in ("P", "L") else np.zeros(code.shape, bool)
        values = sorted(set(np.unique(code[~void]).tolist()) - {0})
        source = {i + 1: v for i, v in enumerate(values)}
    else:
        raise DavisError(f"--mask {path}: mode {img.mode!r}; give a palette PNG, a single-channel PNG of object ids "
                         f"(0 = background) or a colour PNG (black = background)")
    if not values:
        raise DavisError(f"--mask {path}: no object in it (all background): mark the objects to track")
    if len(values) > 254:
        raise DavisError(f"--mask {path}: {len(values)} distinct values; at most 254 objects (is this an image "
                         f"rather than a mask?)")
    ids = np.zeros(code.shape, np.uint8)
    for i, v in enumerate(values):
        ids[code == v] = i + 1
    ids[void] = VOID
    if palette is not None and img.mode == "P":  # the objects keep their colours under their new ids
        old = palette + [0] * (768 - len(palette))
        palette = [0, 0, 0] + [c for i in range(1, 256) for c in (
            old[3 * source[i]:3 * source[i] + 3] if i in source else davis_palette()[3 * i:3 * i + 3])]
    return ids, palette or davis_palette(), source


def track_frames(frames_dir: str, mask: str, out: str, extract, patch: int,
                 cfg: Optional[PropagationConfig] = None, device="cpu", progress: bool = True) -> Dict:
    """Propagates the first frame's objects through the folder; writes masks, GIF and MP4 whole or not at all
    (a temporary folder beside ``out``, renamed at the end). Returns what was written."""
    from tqdm import tqdm

    cfg = cfg or PropagationConfig()
    frames = list_frames(frames_dir)
    first, palette, source = read_user_mask(mask)
    H, W = first.shape
    for path in frames:  # all checked before any work
        hw = image_size_checked(path, "frame")
        if hw != (H, W):
            raise DavisError(f"{path}: frame of {hw[0]}x{hw[1]} but --mask {mask} is {H}x{W}: the mask must be the "
                             f"first frame's, and all frames of one size")
    k = int(first[first != VOID].max())
    size = working_size(H, W, cfg.short_side, patch)
    small = np.array(Image.fromarray(np.where(first == VOID, 0, first)).resize(
        (size[1] // patch, size[0] // patch), Image.NEAREST))
    labels = F.one_hot(torch.from_numpy(small).long(), k + 1).permute(2, 0, 1).float()

    def features(i):
        return extract(read_frame(frames[i], size))

    preds = [np.where(first == VOID, 0, first).astype(np.uint8)]
    bar = tqdm(total=len(frames) - 1, desc="tracking", unit="frame", disable=not progress)
    for probs in run_propagation(features, len(frames), labels.to(device), cfg):
        preds.append(finalize(probs, patch, (H, W)).cpu().numpy())
        bar.update(1)
    bar.close()

    video = []

    def fill(tmp):
        os.makedirs(os.path.join(tmp, "masks"))
        for path, ids in zip(frames, preds):
            write_annotation(os.path.join(tmp, "masks", os.path.splitext(os.path.basename(path))[0] + ".png"), ids,
                             palette)
        tiles = [overlay(p, ids, palette) for p, ids in zip(frames, preds)]
        scale = min(1.0, 480 / max(H, W))  # the GIF at most 480 px, the MP4 at full size
        small = [t.resize((max(1, round(W * scale)), max(1, round(H * scale))), Image.BILINEAR) for t in tiles]
        small[0].save(os.path.join(tmp, "overlay.gif"), save_all=True, append_images=small[1:], duration=100, loop=0)
        video.append(_write_mp4(os.path.join(tmp, "overlay.mp4"), tiles))
        write_json(os.path.join(tmp, "objects.json"), {"mask": os.path.abspath(mask),
                                                       "frames": os.path.abspath(frames_dir),
                                                       "objects": {str(i): v for i, v in source.items()}})

    write_folder_atomic(out, fill)
    return dict(frames=len(frames), objects=k, out=out, video=video[0])


def _write_mp4(path: str, tiles: List[Image.Image], fps: int = 10) -> bool:
    """OpenCV's MPEG-4 writer; False (and no file) where this OpenCV build has no such encoder."""
    import cv2

    w, h = tiles[0].size
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w - w % 2, h - h % 2))
    if not writer.isOpened():
        return False
    for t in tiles:
        writer.write(cv2.cvtColor(np.asarray(t)[: h - h % 2, : w - w % 2], cv2.COLOR_RGB2BGR))
    writer.release()
    ok = os.path.isfile(path) and os.path.getsize(path) > 0
    if not ok and os.path.exists(path):
        os.remove(path)
    return ok

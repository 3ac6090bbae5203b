"""Images: the built-in picture (coloured shapes, generated), loading and normalization."""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..errors import PEDenseError
from ..io import error_summary
from ..specs import PIXEL_MEAN, PIXEL_STD

BUILTIN = "builtin:shapes"
# the image files every folder reader takes (features, probe, tracking frames, MMSeg folder datasets)
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
COLORS = [(220, 40, 40), (40, 180, 60), (50, 90, 230), (240, 200, 30), (200, 60, 200), (30, 200, 210)]


def shapes_image(size: Tuple[int, int] = (384, 512), seed: int = 0, n: int = 6) -> Image.Image:
    """A deterministic picture: a textured gradient background and ``n`` coloured circles/boxes/triangles."""
    h, w = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    bg = np.stack([90 + 60 * xx / w, 100 + 40 * yy / h, 120 + 30 * np.sin(xx / 23.0) * np.cos(yy / 17.0)], -1)
    bg = bg + rng.normal(0, 6, size=bg.shape)
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for i in range(n):
        r = int(rng.integers(min(h, w) // 12, min(h, w) // 5))
        cx, cy = int(rng.integers(r, w - r)), int(rng.integers(r, h - r))
        color = COLORS[i % len(COLORS)]
        kind = i % 3
        if kind == 0:
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=color)
        elif kind == 1:
            draw.rectangle([cx - r, cy - r * 2 // 3, cx + r, cy + r * 2 // 3], fill=color)
        else:
            draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=color)
    return img


# PIL modes of more than 8 bits per channel: Detectron2 (PIL) clips such pixels to 255, mmcv (OpenCV) divides them by
# 256, so no one reading serves both frameworks
_HIGH_DEPTH = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def read_rgb(path: str) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB, read as the frameworks read it, in one place for every tool (features,
    probe, tracking frames, predict): EXIF orientation applied (a phone's portrait JPEG stored landscape with tag 6
    comes out portrait, as mmcv's ``LoadImageFromFile``, OpenCV and Detectron2's ``read_image`` give it), grayscale
    and palette images expanded to RGB, an alpha channel dropped (not blended: as both frameworks). Decoded by OpenCV
    (one copy of the pixels); formats OpenCV does not read go through PIL with the same orientation rule. A 16-bit or
    float image is refused (``PEDenseError``): the two frameworks read it differently."""
    import cv2

    try:
        with Image.open(path) as im:  # the header only: mode and size, no pixels decoded
            mode = im.mode
    except FileNotFoundError:
        raise FileNotFoundError(f"Image not found: {path} (use {BUILTIN!r} for the built-in picture)") from None
    except (OSError, ValueError) as e:  # not an image
        raise PEDenseError(f"{path}: cannot read this image ({error_summary(e)})") from None
    if mode in _HIGH_DEPTH:
        raise PEDenseError(f"{path}: a {mode} image (more than 8 bits per channel), which Detectron2 (PIL: clipped to "
                           f"255) and mmcv (OpenCV: divided by 256) read differently; convert it to 8-bit RGB first, "
                           f"scaled as you mean it (e.g. cv2.convertScaleAbs or PIL's point())")
    img = cv2.imread(path, cv2.IMREAD_COLOR)  # EXIF orientation applied
    if img is not None:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB, dst=img)
    try:  # e.g. GIF: PIL, with the same orientation rule
        from PIL import ImageOps

        with Image.open(path) as im:
            return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except (OSError, ValueError) as e:  # a truncated or corrupt file
        raise PEDenseError(f"{path}: cannot read this image ({error_summary(e)})") from None


def oriented_size(path: str) -> Tuple[int, int]:
    """(H, W) of the image ``read_rgb`` gives, from the header alone: EXIF orientations 5 to 8 swap the sides."""
    with Image.open(path) as im:
        w, h = im.size
        return (w, h) if im.getexif().get(0x0112, 1) in (5, 6, 7, 8) else (h, w)


def load_image(path: str) -> Image.Image:
    """``read_rgb`` as a PIL image (the built-in picture for ``BUILTIN``)."""
    if path == BUILTIN:
        return shapes_image()
    img = read_rgb(path)
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise PEDenseError(f"{path}: empty image ({img.shape[1]}x{img.shape[0]})")
    return Image.fromarray(img)


def to_tensor(img: Image.Image, short_side: Optional[int] = None, multiple: int = 1,
              max_side: Optional[int] = None) -> torch.Tensor:
    """PIL RGB -> (1, 3, H, W) normalized as PE expects (mean 0.5, std 0.5); optional resize of the short side
    and rounding of both sides to ``multiple``. ``max_side`` caps the long side (the short side then ends below
    ``short_side``): a 16x2048 strip at short side 448 would otherwise be 448x57344 pixels."""
    return normalize(resize_short_side(img, short_side, multiple, max_side)).unsqueeze(0)


def resize_short_side(img: Image.Image, short_side: Optional[int], multiple: int = 1,
                      max_side: Optional[int] = None) -> Image.Image:
    """The image with its short side at ``short_side`` (``None``: as it is), the long side capped at ``max_side``,
    both sides rounded to ``multiple`` (bicubic); the image itself when nothing changes."""
    if not short_side:
        return img
    w, h = img.size
    s = short_side / min(h, w)
    if max_side and max(h, w) * s > max_side:
        s = max_side / max(h, w)
    nh, nw = max(multiple, round(h * s / multiple) * multiple), max(multiple, round(w * s / multiple) * multiple)
    return img if (nw, nh) == (w, h) else img.resize((nw, nh), Image.BICUBIC)


def normalize(img) -> torch.Tensor:
    """PIL RGB or uint8 (H, W, 3) -> (3, H, W) float tensor normalized as PE expects (``PIXEL_MEAN`` /
    ``PIXEL_STD`` on [0, 1])."""
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (x - torch.tensor(PIXEL_MEAN).view(3, 1, 1)) / torch.tensor(PIXEL_STD).view(3, 1, 1)

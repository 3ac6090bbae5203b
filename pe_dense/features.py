"""Features for any image: a folder of images to disk, images of any size through overlapping tiles blended without
seams, and features at the resolution of the pixels (bilinear, or image-guided).

``extract_features`` is the function (``pe-dense features INPUT... --save DIR`` calls it): each image is resized
(short side ``size``, or kept at its own size with ``size=None``), run through the tower once for all ``blocks``
(whole, or in tiles of ``tile`` px overlapping by ``overlap`` px), optionally upsampled to ``stride`` px, and either
returned as tensors or written to ``DIR/<name>.safetensors`` (``features``: C x h x w, fp16 unless ``fp32``; with
several blocks ``features.block<i>`` each) with metadata: model, weights, blocks, stride in input pixels, the input
size after resizing, and the settings. A rerun skips files written with the same settings and redoes the others.

Tiles: a tile's features are weighted by a ramp that falls towards the tile's edges where a neighbouring tile overlaps
it (to ~0 at the edge; 1 where no other tile covers the image), and the weighted sum is divided by the summed weights,
so each position crossfades from one tile to the next instead of stepping at a tile border (``blend="mean"``: equal
weights, as MMSeg's ``slide``). Tiles are ``pe_dense.modeling.windows``' sliding windows, laid out in patch cells.
The image stays uint8 in memory; only a tile at a time is normalized and run, so the
memory beyond the image and the output is set by the tile.

Guided upsampling is a joint bilateral upsampler (FeatUp's JBU stage, training-free): an output pixel averages the
low-resolution features of the cells around it, weighted by distance (in cells) and by how close the cell's mean
colour is to the pixel's colour, so features follow the image's edges inside a patch. Computed in row chunks.
"""
from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .data.images import IMAGE_EXTS, normalize, resize_short_side
from .errors import PEDenseError
from .io import error_summary, listed, weights_identity, write_atomic
from .modeling.windows import blend_windows, check_blend

UPSAMPLE = ("bilinear", "guided")


# ---------------------------------------------------------------------------------------------------------------
# inputs


def find_images(inputs: Sequence[str]) -> List[str]:
    """Files, folders (their images, sorted; not recursive) and globs -> image paths, in order, each once."""
    out, seen = [], set()
    for item in inputs:
        if item.startswith("builtin:"):
            paths = [item]
        elif os.path.isdir(item):
            paths = sorted(os.path.join(item, f) for f in os.listdir(item) if f.lower().endswith(IMAGE_EXTS))
            if not paths:
                raise PEDenseError(f"{item}: no images in this folder ({', '.join(IMAGE_EXTS)})")
        elif any(c in item for c in "*?["):
            paths = sorted(p for p in glob.glob(item) if os.path.isfile(p))
            if not paths:
                raise PEDenseError(f"{item}: the pattern matches no file")
        elif os.path.isfile(item):
            paths = [item]
        else:
            raise FileNotFoundError(f"not found: {item} (give image files, folders or globs)")
        for p in paths:
            if p not in seen:
                seen.add(p)
                out.append(p)
    return out


# ---------------------------------------------------------------------------------------------------------------
# tiles


@torch.no_grad()
def tiled_features(model, image, tile: int, overlap: int = 0, blend: str = "ramp", device="cpu",
                   progress: bool = False) -> List[torch.Tensor]:
    """The tower's taps for ``image`` (PIL RGB or uint8 (H, W, 3)) of any size, from ``tile`` x ``tile`` px tiles
    overlapping by ``overlap`` px (both multiples of the patch), blended (``"ramp"``) or averaged (``"mean"``) where
    they overlap. Returns one (C, ceil(H / p), ceil(W / p)) float32 map per tap, as a whole forward pads the image."""
    p = model.patch_size
    if tile <= 0 or tile % p or overlap < 0 or overlap % p or overlap >= tile:
        raise PEDenseError(f"--tile {tile} --overlap {overlap}: both multiples of the patch ({p} px), "
                           f"0 <= overlap < tile")
    arr = np.asarray(image.convert("RGB")) if hasattr(image, "convert") else np.asarray(image)
    H, W = arr.shape[:2]
    tc, oc = tile // p, overlap // p

    def run(y, x, nh, nw):  # in patch cells: the windows of pe_dense.modeling.windows, one tile at a time
        t = normalize(arr[y * p: (y + nh) * p, x * p: (x + nw) * p])
        t = F.pad(t, (0, nw * p - t.shape[-1], 0, nh * p - t.shape[-2]))  # past the image: zeros, as fit="pad"
        return [m[0].float().cpu() for m in model(t[None].to(device))]

    return blend_windows(run, (-(-H // p), -(-W // p)), (tc, tc), (tc - oc, tc - oc), blend, progress, "tiles")


# ---------------------------------------------------------------------------------------------------------------
# pixel resolution


def upsample(feat: torch.Tensor, image, patch: int, stride: int = 1, mode: str = "bilinear", **guided) -> torch.Tensor:
    """(C, h, w) features of ``image`` (PIL RGB or uint8 (H, W, 3), the input the tower saw) -> (C, ceil(H / stride),
    ceil(W / stride)): ``"bilinear"``, or ``"guided"`` (``guided_upsample``)."""
    if mode not in UPSAMPLE:
        raise PEDenseError(f"--upsample {mode}: one of {', '.join(UPSAMPLE)}")
    if stride < 1:
        raise PEDenseError(f"--stride {stride}: a whole number >= 1")
    arr = np.asarray(image.convert("RGB")) if hasattr(image, "convert") else np.asarray(image)
    H, W = arr.shape[:2]
    out = (-(-H // stride), -(-W // stride))
    if mode == "bilinear":
        # the maps cover the padded canvas: crop it to the image, then resize
        h, w = min(feat.shape[1], -(-H // patch)), min(feat.shape[2], -(-W // patch))
        canvas = F.interpolate(feat[None, :, :h, :w].float(), size=(h * patch, w * patch), mode="bilinear",
                               align_corners=False)[0, :, :H, :W]
        return F.interpolate(canvas[None], size=out, mode="area")[0] if stride > 1 else canvas
    return guided_upsample(feat, arr, patch, stride, **guided)


def guided_upsample(feat: torch.Tensor, image: np.ndarray, patch: int, stride: int = 1, radius: int = 2,
                    sigma_spatial: float = 1.0, sigma_range: float = 0.1, chunk_rows: int = 32,
                    out_dtype=torch.float32) -> torch.Tensor:
    """Joint bilateral upsampling of (C, h, w) patch features to stride ``stride`` guided by ``image`` (uint8
    (H, W, 3)): output pixel q = sum over the (2 radius + 1)^2 cells c around it of f_c * exp(-d(q, c)^2 / 2
    sigma_spatial^2) * exp(-|I_q - I_c|^2 / 2 sigma_range^2), normalized; d in cells, I_q the image at q (averaged
    over the stride), I_c the cell's mean colour, both in [0, 1]. Row chunks of ``chunk_rows`` output rows bound
    the working memory to C x chunk_rows x W / stride x 4 bytes per term; ``out_dtype`` float16 halves the output
    (C x H / stride x W / stride)."""
    H, W = image.shape[:2]
    C, h, w = feat.shape
    img = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1).div_(255.0)
    padded = F.pad(img, (0, w * patch - W, 0, h * patch - H)) if (h * patch >= H and w * patch >= W) else img
    cell_colour = F.avg_pool2d(padded[None, :, : h * patch, : w * patch], patch)[0]  # (3, h, w)
    Ho, Wo = -(-H // stride), -(-W // stride)
    guide = F.avg_pool2d(F.pad(img, (0, Wo * stride - W, 0, Ho * stride - H), mode="replicate")[None],
                         stride)[0] if stride > 1 else img  # (3, Ho, Wo)
    u = (torch.arange(Ho) + 0.5) * stride / patch - 0.5  # output centres in cell coordinates
    v = (torch.arange(Wo) + 0.5) * stride / patch - 0.5
    ui, vi = u.round().long(), v.round().long()
    out = torch.empty(C, Ho, Wo, dtype=out_dtype)
    f = feat.float()
    for r0 in range(0, Ho, chunk_rows):
        r1 = min(Ho, r0 + chunk_rows)
        num = torch.zeros(C, r1 - r0, Wo)
        den = torch.zeros(r1 - r0, Wo)
        g = guide[:, r0:r1]
        for dy in range(-radius, radius + 1):
            cy = (ui[r0:r1] + dy).clamp(0, h - 1)
            wy = torch.exp(-((u[r0:r1] - cy) ** 2) / (2 * sigma_spatial ** 2))
            for dx in range(-radius, radius + 1):
                cx = (vi + dx).clamp(0, w - 1)
                wx = torch.exp(-((v - cx) ** 2) / (2 * sigma_spatial ** 2))
                col = cell_colour[:, cy][:, :, cx]  # (3, rows, Wo)
                wr = torch.exp(-((g - col) ** 2).sum(0) / (2 * sigma_range ** 2))
                wt = wy[:, None] * wx[None, :] * wr
                num += f[:, cy][:, :, cx] * wt
                den += wt
        out[:, r0:r1] = num / den.clamp_min(1e-12)
    return out


# ---------------------------------------------------------------------------------------------------------------
# the extraction


@dataclass
class Extracted:
    """One image's features: ``features[block]`` (C, h, w), ``stride`` in input pixels, ``input_size`` (H, W) after
    resizing, the ``source`` path."""
    source: str
    features: Dict[int, torch.Tensor] = field(default_factory=dict)
    stride: int = 16
    input_size: Tuple[int, int] = (0, 0)


def output_name(path: str, used: Dict[str, str]) -> str:
    """``DIR/photo.jpg`` -> ``photo``; a second ``photo`` (another folder, or ``photo.png``) gets its extension, then
    a number."""
    base = os.path.splitext(os.path.basename(path))[0] if not path.startswith("builtin:") else path.split(":")[1]
    name = base
    if name in used and used[name] != path:
        name = f"{base}_{os.path.splitext(path)[1].lstrip('.')}"
    i = 1
    while name in used and used[name] != path:
        name, i = f"{base}_{i}", i + 1
    used[name] = path
    return name


def _settings(model_name, weights, blocks, size, max_side, tile, overlap, blend, up, stride, fp32):
    return {"model": model_name, "weights": weights, "blocks": ",".join(map(str, blocks)), "size": str(size),
            "max_side": str(max_side), "tile": str(tile), "overlap": str(overlap), "blend": blend,
            "upsample": str(up), "upsample_stride": str(stride), "dtype": "float32" if fp32 else "float16"}


def _done(path: str, settings: Dict[str, str]) -> bool:
    if not os.path.isfile(path):
        return False
    from safetensors import safe_open

    try:
        with safe_open(path, "pt") as f:
            meta = f.metadata() or {}
    except Exception:  # cut short: redone
        return False
    return all(meta.get(k) == v for k, v in settings.items())


def extract_features(inputs: Sequence[str], model: str = "PE-Spatial-T16-512", checkpoint: Optional[str] = None,
                     blocks: Sequence[int] = (-1,), size: Optional[int] = 448, max_side: Optional[int] = None,
                     tile: Optional[int] = None, overlap: int = 0, blend: str = "ramp",
                     upsample_mode: Optional[str] = None, stride: Optional[int] = None, batch_size: int = 8,
                     fp32: bool = False, save: Optional[str] = None, device: str = "cpu", progress: bool = True,
                     overrides: Optional[dict] = None, tower=None, pca: bool = False,
                     meta: Optional[Dict[str, str]] = None):
    """Features of every image of ``inputs`` (files, folders, globs; ``builtin:shapes``).

    Each image is resized (short side ``size``; ``None``: its own size; long side at most ``max_side``, default
    4 x ``size``) and run once for all ``blocks`` (whole; or with ``tile``, in tiles overlapping by ``overlap`` px,
    ``blend``-ed); ``upsample_mode`` (``"bilinear"``/``"guided"``) brings the features to ``stride`` px (default:
    the patch, i.e. no change). Images of one size after resizing are batched (``batch_size``).

    Without ``save``: returns a list of ``Extracted`` (float32 tensors). With ``save=DIR``: writes
    ``DIR/<name>.safetensors`` per image (skipping files of the same settings) and returns a summary dict (written,
    skipped, unreadable, files); ``pca`` adds ``DIR/<name>_pca.png`` (the image beside the PCA of the last block).
    An unreadable image is named and skipped, and counted at the end. ``meta``: more settings written into each
    file's metadata (and compared when deciding whether a file is already done), e.g. the classes of ``--text``."""
    from tqdm import tqdm

    from .data.images import load_image
    from .factory import create_model

    paths = find_images(inputs)
    if upsample_mode is not None and upsample_mode not in UPSAMPLE:
        raise PEDenseError(f"--upsample {upsample_mode}: one of {', '.join(UPSAMPLE)}")
    if stride is not None and stride < 1:
        raise PEDenseError(f"--stride {stride}: a whole number >= 1")
    check_blend(blend)
    given = tower is not None
    if not given:
        tower = create_model(model, pretrained=checkpoint, out_indices=list(blocks), **(overrides or {}))
    tower = tower.eval().to(device)
    depth = tower.depth
    taps = sorted({int(b) % depth for b in blocks})
    if not set(taps) <= set(tower.out_indices):
        raise PEDenseError(f"blocks {list(blocks)}: the tower taps {list(tower.out_indices)}")
    keep = [list(tower.out_indices).index(b) for b in taps]
    p = tower.patch_size
    if tile is not None and (tile <= 0 or tile % p or overlap < 0 or overlap % p or overlap >= tile):
        raise PEDenseError(f"--tile {tile} --overlap {overlap}: both multiples of the patch ({p} px), "
                           f"0 <= overlap < tile")
    if stride is not None and upsample_mode is None and stride != p:
        raise PEDenseError(f"--stride {stride} needs --upsample bilinear or guided (the tower's own stride is {p})")
    out_stride = stride if upsample_mode else p
    max_side = max_side or (4 * size if size else None)
    weights = weights_identity(checkpoint, tower if given else None)  # a tower in memory: by its weights
    settings = _settings(model, weights, taps, size, max_side, tile, overlap, blend, upsample_mode, out_stride, fp32)
    settings.update(meta or {})
    used: Dict[str, str] = {}
    names = [output_name(pth, used) for pth in paths]
    todo = list(range(len(paths)))
    skipped = []
    if save:
        os.makedirs(save, exist_ok=True)
        todo = [i for i in todo if not _done(os.path.join(save, names[i] + ".safetensors"), settings)]
        skipped = [i for i in range(len(paths)) if i not in set(todo)]
    results, unreadable, written = [], [], []
    t0 = time.time()
    bar = tqdm(total=len(todo), desc=f"{model} features", unit="img", disable=not progress or not todo)

    def finish(i, img, maps):
        feats = {}
        for b, m in zip(taps, [maps[k] for k in keep]):
            m = m[:, : -(-img.height // p), : -(-img.width // p)]  # the image's cells (the padding's are dropped)
            if upsample_mode:  # saved as fp16: the pixel-resolution output is made in fp16 (half the memory)
                kw = dict(out_dtype=torch.float16) if save and not fp32 and upsample_mode == "guided" else {}
                m = upsample(m, img, p, out_stride, upsample_mode, **kw)
            feats[b] = m
        r = Extracted(paths[i], feats, out_stride, (img.height, img.width))
        if save:
            written.append(_write(os.path.join(save, names[i] + ".safetensors"), r, settings, fp32))
            if pca:
                from .analysis import pca_picture

                pca_picture(img, feats[taps[-1]], os.path.join(save, names[i] + "_pca.png"))
        else:
            results.append((i, r))
        bar.update(1)

    pending: Dict[Tuple[int, int], list] = {}

    def flush(key):
        batch = pending.pop(key)
        x = torch.stack([normalize(img) for _, img in batch]).to(device)
        with torch.no_grad():
            maps = tower(x)
        for j, (i, img) in enumerate(batch):
            finish(i, img, [m[j].float().cpu() for m in maps])

    for i in todo:
        try:
            img = resize_short_side(load_image(paths[i]), size, max_side=max_side)
        except (PEDenseError, OSError) as e:
            unreadable.append((paths[i], error_summary(e)))
            print(f"skipped {paths[i]}: {e}")
            bar.update(1)
            continue
        if tile is not None:
            finish(i, img, tiled_features(tower, img, tile, overlap, blend, device))
            continue
        key = (img.height, img.width)
        pending.setdefault(key, []).append((i, img))
        if len(pending[key]) >= batch_size:
            flush(key)
    for key in list(pending):
        flush(key)
    bar.close()
    if unreadable:
        print(f"{len(unreadable)} of {len(paths)} image(s) unreadable, skipped: "
              f"{listed([u[0] for u in unreadable], 5)}")
    if not save:
        return [r for _, r in sorted(results, key=lambda t: t[0])]
    return dict(written=len(written), skipped=len(skipped), unreadable=unreadable, files=written,
                seconds=time.time() - t0)


def _write(path: str, r: Extracted, settings: Dict[str, str], fp32: bool) -> str:
    from safetensors.torch import save_file

    dtype = torch.float32 if fp32 else torch.float16
    if len(r.features) == 1:
        tensors = {"features": next(iter(r.features.values())).to(dtype).contiguous()}
    else:
        tensors = {f"features.block{b}": t.to(dtype).contiguous() for b, t in r.features.items()}
    meta = dict(settings, stride=str(r.stride), input_size=f"{r.input_size[0]}x{r.input_size[1]}",
                source=os.path.abspath(r.source) if not r.source.startswith("builtin:") else r.source)
    return write_atomic(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def read_features(path: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """A file written by ``extract_features``: its tensors (float32) and its metadata."""
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        return {k: f.get_tensor(k).float() for k in f.keys()}, dict(f.metadata() or {})

"""``pe-dense segment``: training-free segmentation by class names with PE-Core (optionally PE-Spatial as the proxy
of the last block's attention): per-patch embeddings in the text space (``pe_dense.modeling.clip.dense_embeddings``),
cosine similarity with each class's prompt-ensemble embedding times ``exp(logit_scale)``, softmax over classes,
bilinear to the image's size, argmax; pixels whose best probability is under ``--bg-thresh`` get 255 (MMSeg's
ignore value: "none of these"). Whole image, or blended sliding windows (``--window``) for any size.

Writes, as ``pe-dense predict`` does for a segmentation model: ``OUT/NAME.png`` (MMSeg's picture: the class colours
over the image, names in boxes) and ``OUT/NAME_labels.png`` (the class index per pixel: palette PNG, uint16 past 256
classes), plus ``OUT/classes.txt`` (index -> name).
"""
from __future__ import annotations

import os
import time
from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .clip import create_clip, parse_classes, templates, zero_shot_weights
from .data.images import load_image, normalize, resize_short_side
from .errors import PEDenseError
from .features import find_images
from .io import write_atomic
from .modeling.clip import DENSE_METHODS, dense_embeddings
from .modeling.windows import resize_bands, sliding_window

IGNORE = 255  # below --bg-thresh: MMSeg's ignore index


class _ClassScores(torch.nn.Module):
    """What segmenting by class names shares: the PE-Core CLIP model, the class names and their prompt-ensemble
    embeddings (computed at the first forward after the weights change: ``reset_text()``), and ``forward(x)`` ->
    (B, K, H, W) logits (``scale()`` x the cosines of ``similarity``) at the input's size, bilinear from the patch
    grid of ``_grid_tower()``."""

    def __init__(self, clip, names: Sequence[str], prompts: str):
        super().__init__()
        self.clip, self.names, self.prompts = clip, list(names), templates(prompts)
        self._text = None

    def reset_text(self):
        self._text = None

    def text(self) -> torch.Tensor:
        """(K, D) unit class embeddings (the prompt ensemble of each name)."""
        if self._text is None:
            self._text = F.normalize(zero_shot_weights(self.clip, self.names, self.prompts).float(), dim=-1)
        return self._text

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.scale() * self.similarity(x)
        # the grid covers the input padded to whole patches (token (i, j) sees pixels [i p, (i + 1) p)): resized to
        # that canvas, then cut to the input
        tower = self._grid_tower()
        p = tower.patch_size
        H, W = x.shape[-2:]
        size = (logits.shape[-2] * p, logits.shape[-1] * p) if tower.fit == "pad" else (H, W)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)[..., :H, :W]


class TextSegmenter(_ClassScores):
    """A PE-Core CLIP model, class names and a training-free dense method (``DENSE_METHODS``): logits are
    ``exp(logit_scale)`` x cosine of each patch's text-space embedding with each class's."""

    def __init__(self, clip, names: Sequence[str], prompts: str = "imagenet80", method: str = "value", proxy=None,
                 **kw):
        if method not in DENSE_METHODS:
            raise PEDenseError(f"unknown method {method!r}: one of {', '.join(DENSE_METHODS)}")
        if (method == "proxy") != (proxy is not None):
            raise PEDenseError("method 'proxy' and a proxy tower go together (--method proxy --proxy "
                               "PE-Spatial-...)" if method == "proxy" else
                               f"a proxy tower is used by method 'proxy' only, not {method!r}")
        super().__init__(clip, names, prompts)
        self.method, self.proxy, self.kw = method, proxy, kw

    @torch.no_grad()
    def similarity(self, x: torch.Tensor) -> torch.Tensor:
        """(B, K, h, w): the cosine similarity of each patch's embedding with each class's, on the patch grid."""
        proxy = self.proxy(x)[-1] if self.proxy is not None else None
        emb = F.normalize(dense_embeddings(self.clip, x, self.method, proxy, **self.kw).float(), dim=1)
        return torch.einsum("bdhw,kd->bkhw", emb, self.text().to(emb.device))

    def scale(self) -> torch.Tensor:
        return self.clip.logit_scale.exp()

    def _grid_tower(self):
        return self.clip.visual


class ProjectionSegmenter(_ClassScores):
    """Segmentation through a learned text-to-patch projection (``pe_dense.projection``): each class's PE-Core text
    embedding projected into the PE-Spatial tower's feature space, cosine with each patch's feature there, times
    1 / the training temperature."""

    def __init__(self, clip, names: Sequence[str], prompts: str, projection, spatial, temperature: float):
        super().__init__(clip, names, prompts)
        self.projection, self.spatial = projection, spatial
        self.temperature = float(temperature)

    def scale(self) -> torch.Tensor:
        return torch.tensor(1.0 / self.temperature)

    def _grid_tower(self):
        return self.spatial

    @torch.no_grad()
    def similarity(self, x: torch.Tensor) -> torch.Tensor:
        f = F.normalize(self.spatial(x)[-1].float(), dim=1)
        t = F.normalize(self.projection(self.text().to(f.device)), dim=-1)
        return torch.einsum("bchw,kc->bkhw", f, t)


class TextMaps(torch.nn.Module):
    """A ``TextSegmenter`` seen as a tower by ``pe_dense.features``: one tap, ``forward(x)`` -> [(B, K, h, w) cosine
    similarities per class] on the patch grid, so ``pe-dense features --text`` tiles, upsamples and saves them as it
    does features."""

    depth = 1
    out_indices = [0]

    def __init__(self, segmenter: TextSegmenter):
        super().__init__()
        self.segmenter = segmenter
        self.patch_size = segmenter.clip.visual.patch_size

    def forward(self, x: torch.Tensor):
        return [self.segmenter.similarity(x)]


def build_segmenter(classes, model: str = "PE-Core-T16-384", checkpoint: Optional[str] = None, method: str = "value",
                    proxy: Optional[str] = None, proxy_checkpoint: Optional[str] = None, prompts: str = "imagenet80",
                    device: str = "cpu", **kw):
    """(TextSegmenter, class names)."""
    from .factory import create_model

    names = parse_classes(classes)
    clip = create_clip(model, pretrained=checkpoint or None).to(device).eval()
    if method == "projection":
        return _projection_segmenter(clip, names, prompts, kw, proxy, proxy_checkpoint, device), names
    tower = None
    if proxy:
        tower = create_model(proxy, pretrained=proxy_checkpoint or None).to(device).eval()
    elif proxy_checkpoint:
        raise PEDenseError("--proxy-checkpoint goes with --proxy NAME (the proxy tower, e.g. PE-Spatial-T16-512)")
    return TextSegmenter(clip, names, prompts, method, tower, **kw).to(device), names


def _projection_segmenter(clip, names, prompts, kw, proxy, spatial_checkpoint, device):
    from .factory import create_model
    from .projection import read_projection

    if proxy:
        raise PEDenseError("--method projection takes its PE-Spatial tower from the projection file, not --proxy")
    if not kw.get("projection"):
        raise PEDenseError("--method projection needs --projection FILE (written by pe-dense text-projection)")
    lin, meta = read_projection(kw["projection"])
    if meta.get("clip_model") != clip.name:
        raise PEDenseError(f"{kw['projection']} was trained on {meta.get('clip_model')}'s text embeddings, not "
                           f"{clip.name}'s: give --model {meta.get('clip_model')}")
    if lin.in_features != clip.text_projection.shape[1]:
        raise PEDenseError(f"{kw['projection']} maps {lin.in_features}-d text embeddings, {clip.name} gives "
                           f"{clip.text_projection.shape[1]}")
    blocks = [int(b) for b in meta.get("spatial_blocks", "-1").split(",") if b]
    weights = spatial_checkpoint
    if weights is None and meta.get("spatial_weights") not in (None, "", "random init"):
        raise PEDenseError(f"{kw['projection']} was trained on features of {meta['spatial_model']} with weights "
                           f"{meta['spatial_weights']}: give them with --spatial-checkpoint")
    spatial = create_model(meta["spatial_model"], pretrained=weights, out_indices=blocks[-1:]).to(device).eval()
    if lin.out_features != spatial.width:
        raise PEDenseError(f"{kw['projection']} maps into {lin.out_features} channels, {meta['spatial_model']} has "
                           f"{spatial.width}")
    return ProjectionSegmenter(clip, names, prompts, lin.to(device), spatial,
                               float(meta.get("temperature", 0.07))).to(device)


def label_map(logits: torch.Tensor, size, bg_thresh: Optional[float] = None) -> np.ndarray:
    """(1, K, h, w) logits -> (H, W) labels at ``size``: bilinear a band of rows at a time, softmax, argmax; 255 where
    the best probability is under ``bg_thresh``. uint8 up to 255 classes, else uint16."""
    K = logits.shape[1]
    if bg_thresh is not None and K >= IGNORE:
        raise PEDenseError(f"--bg-thresh marks pixels with {IGNORE}, which is a class index with {K} classes")
    out = np.empty(tuple(size), np.uint8 if K <= 255 else np.uint16)
    for y, band in resize_bands([(0, logits.float())], logits.shape[-2:], size):
        p = band[0].softmax(0)
        best, lab = p.max(0)
        if bg_thresh is not None:
            lab[best < bg_thresh] = IGNORE
        out[y: y + lab.shape[0]] = lab.cpu().numpy()
    return out


def segment(inputs: Sequence[str], classes, model: str = "PE-Core-T16-384", checkpoint: Optional[str] = None,
            method: str = "value", proxy: Optional[str] = None, proxy_checkpoint: Optional[str] = None,
            prompts: str = "imagenet80", size: Optional[int] = None, window: Optional[int] = None,
            stride: Optional[int] = None, bg_thresh: Optional[float] = None, out: str = "segments",
            device: str = "cpu", quiet: bool = False, **kw) -> List[str]:
    """Segments each image by the class names; returns the pictures written (see the module's docstring)."""
    from PIL import Image

    from .pictures import seg_overlay

    if bg_thresh is not None and not 0 < bg_thresh < 1:
        raise PEDenseError(f"--bg-thresh is a probability in (0, 1), got {bg_thresh}")
    files = [f for f in find_images(inputs) if not f.startswith("builtin:")]
    if not files:
        raise PEDenseError("no image files to segment (give files, folders or globs)")
    seg, names = build_segmenter(classes, model, checkpoint, method, proxy, proxy_checkpoint, prompts, device, **kw)
    if not checkpoint and not quiet:
        print(f"note: {model} with random weights (give --checkpoint for the released ones): the labels are noise")
    grid = seg._grid_tower()
    side = size or grid.pos_grid * grid.patch_size
    if window is not None and stride is None:
        stride = max(1, window * 2 // 3)
    if window is not None and stride > window:
        raise PEDenseError(f"--stride {stride} is larger than --window {window}: pixels between windows would be "
                           f"seen by none")
    os.makedirs(out, exist_ok=True)
    write_atomic(os.path.join(out, "classes.txt"), lambda p: open(p, "w").write(
        "".join(f"{i} {n}\n" for i, n in enumerate(names)) + (f"{IGNORE} (below --bg-thresh)\n"
                                                             if bg_thresh is not None else "")))
    written = []
    for path in files:
        t0 = time.time()
        img = load_image(path)
        x = normalize(resize_short_side(img, side)).unsqueeze(0).to(device)
        if window is not None:
            if window > min(x.shape[-2:]):
                raise PEDenseError(f"{path}: --window {window} is larger than the image after the resize "
                                   f"({x.shape[-1]} x {x.shape[-2]}); give a smaller window or a larger --size")
            logits = sliding_window(seg, x, (window, window), (stride, stride), "mean", progress=not quiet)
        else:
            logits = seg(x)
        labels = label_map(logits, (img.height, img.width), bg_thresh)
        rgb = np.asarray(img)
        stem = os.path.join(out, os.path.splitext(os.path.basename(path))[0])
        pic = seg_overlay(rgb, labels, names)  # 255 (below --bg-thresh): black, unnamed
        write_atomic(stem + ".png", lambda p: Image.fromarray(pic).save(p, format="PNG"))
        lab = Image.fromarray(labels)
        write_atomic(stem + "_labels.png", lambda p: lab.save(p, format="PNG"))
        counts = np.bincount(labels.ravel(), minlength=len(names))
        present = [names[i] for i in np.flatnonzero(counts) if i < len(names)]
        if not quiet:
            print(f"{path}: {', '.join(present[:8])}{' ...' if len(present) > 8 else ''} -> {stem}.png, "
                  f"{stem}_labels.png ({time.time() - t0:.1f} s)")
        written.append(stem + ".png")
    return written

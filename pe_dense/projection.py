"""A learned text-to-patch projection for PE-Spatial (Talk2DINO's idea, Barsellotti et al. 2024, reduced to its
core): PE-Core's text embeddings are mapped by one linear layer into a PE-Spatial tower's patch-feature space, both
towers frozen, trained from image-caption pairs whose patch features were cached by ``pe-dense features --save``.

Training (``train_projection``): each caption's text embedding (PE-Core, normalized) is projected, ``psi(t)``; for an
image, its patches are pooled by their similarity to ``psi(t)`` (softmax over patches at ``pool_temperature``), and
the caption-image score is the cosine of ``psi(t)`` with that pooled feature; a symmetric InfoNCE over the batch
(``temperature``) pulls each caption to its image. (Talk2DINO pools with DINOv2's attention heads and picks the best;
here every patch competes, and the projection is linear.) Captions: COCO-captions layout (``images`` with
``id`` / ``file_name``, ``annotations`` with ``image_id`` / ``caption``); features: ``DIR/<file stem>.safetensors``.

Segmenting (``pe-dense segment --method projection --projection FILE``): each class's prompt ensemble through PE-Core's
text tower and the projection, each patch of the PE-Spatial tower named in the file, cosine, softmax.
"""
from __future__ import annotations

import json
import os
import time
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from .errors import PEDenseError
from .io import listed, write_atomic

DEFAULTS = dict(epochs=30, lr=1e-3, batch_size=32, temperature=0.07, pool_temperature=0.1, weight_decay=0.0, seed=0)


def read_captions(path: str) -> List[Tuple[str, str]]:
    """(file stem, caption) pairs of a COCO-captions json; an image without captions is skipped, a caption of an
    unknown image refused."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"captions file not found: {path}")
    try:
        d = json.load(open(path, encoding="utf-8"))
        images = {im["id"]: os.path.splitext(os.path.basename(im["file_name"]))[0] for im in d["images"]}
        pairs = [(a["image_id"], a["caption"]) for a in d["annotations"]]
    except (ValueError, KeyError, TypeError) as e:
        raise PEDenseError(f"{path}: a COCO-captions file holds 'images' (id, file_name) and 'annotations' "
                           f"(image_id, caption): {e!r}") from None
    unknown = sorted({i for i, _ in pairs if i not in images})
    if unknown:
        raise PEDenseError(f"{path}: captions of image ids not in 'images': {listed(unknown)}")
    if not pairs:
        raise PEDenseError(f"{path}: no captions")
    return [(images[i], c) for i, c in pairs]


def _features(folder: str, stems: List[str]) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    from .features import read_features

    out, meta, missing = {}, None, []
    for s in sorted(set(stems)):
        path = os.path.join(folder, s + ".safetensors")
        if not os.path.isfile(path):
            missing.append(s)
            continue
        t, m = read_features(path)
        if "features" not in t:
            raise PEDenseError(f"{path}: one tap per file is read ('features'); extract with a single --block")
        if meta is not None and (m.get("model"), m.get("weights")) != (meta.get("model"), meta.get("weights")):
            raise PEDenseError(f"{path}: features of {m.get('model')} ({m.get('weights')}), the others of "
                               f"{meta.get('model')} ({meta.get('weights')}): cache them with one tower")
        meta = meta or m
        out[s] = F.normalize(t["features"].flatten(1).t().float(), dim=-1)  # (N, C) unit patch features
    if missing:
        raise PEDenseError(f"{folder}: no features for {len(missing)} captioned image(s): {listed(missing)} "
                           f"(cache them with pe-dense features IMAGES --save {folder})")
    return out, meta or {}


def scores(proj_text: torch.Tensor, patches: List[torch.Tensor], pool_temperature: float) -> torch.Tensor:
    """(T, C) unit projected texts x images' (N_i, C) unit patches -> (T, I) cosines of each text with its
    similarity-pooled feature of each image."""
    out = []
    for p in patches:
        s = proj_text @ p.t()  # (T, N)
        pooled = F.normalize(torch.softmax(s / pool_temperature, dim=1) @ p, dim=-1)  # (T, C)
        out.append((proj_text * pooled).sum(-1))
    return torch.stack(out, 1)


def train_projection(features: str, captions: str, model: str = "PE-Core-T16-384", checkpoint: Optional[str] = None,
                     out: str = "projection.safetensors", device: str = "cpu", quiet: bool = False,
                     prompt: str = "{}", **settings) -> dict:
    """Trains the projection (see the module) and writes ``out`` (safetensors: ``weight`` (C, D), ``bias`` (C), and
    the towers and settings as metadata). Returns the metadata with the final loss and recall@1."""
    from .clip import create_clip, tokenize

    bad = sorted(set(settings) - set(DEFAULTS))
    if bad:
        raise PEDenseError(f"unknown projection setting(s) {bad}: {', '.join(DEFAULTS)}")
    cfg = dict(DEFAULTS, **settings)
    pairs = read_captions(captions)
    feats, fmeta = _features(features, [s for s, _ in pairs])
    clip = create_clip(model, pretrained=checkpoint or None).to(device).eval()
    with torch.no_grad():
        texts = [prompt.format(c) for _, c in pairs]
        t = torch.cat([clip.encode_text(tokenize(texts[i:i + 256], clip.context_length).to(device), normalize=True)
                       for i in range(0, len(texts), 256)]).float()
    stems = sorted(feats)
    index = {s: i for i, s in enumerate(stems)}
    img_of = torch.tensor([index[s] for s, _ in pairs])
    patches = [feats[s].to(device) for s in stems]
    C, D = patches[0].shape[1], t.shape[1]
    g = torch.Generator().manual_seed(int(cfg["seed"]))
    proj = torch.nn.Linear(D, C).to(device)
    with torch.no_grad():
        proj.weight.copy_(torch.randn(C, D, generator=g) * D ** -0.5)
        proj.bias.zero_()
    opt = torch.optim.AdamW(proj.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    t0, loss_v = time.time(), float("nan")
    for epoch in range(int(cfg["epochs"])):
        order = torch.randperm(len(pairs), generator=g)
        for b0 in range(0, len(order), int(cfg["batch_size"])):
            idx = order[b0:b0 + int(cfg["batch_size"])]
            imgs = sorted(set(img_of[idx].tolist()))
            pt = F.normalize(proj(t[idx].to(device)), dim=-1)
            sc = scores(pt, [patches[i] for i in imgs], cfg["pool_temperature"]) / cfg["temperature"]
            target = torch.tensor([imgs.index(i) for i in img_of[idx].tolist()], device=device)
            loss = F.cross_entropy(sc, target)
            if len(imgs) > 1:  # images to captions: each image's first caption in the batch is its positive
                first = [next(j for j, i in enumerate(img_of[idx].tolist()) if i == k) for k in imgs]
                loss = (loss + F.cross_entropy(sc.t(), torch.tensor(first, device=device))) / 2
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_v = float(loss.detach())
        if not quiet:
            print(f"epoch {epoch + 1}/{cfg['epochs']}: loss {loss_v:.4f}")
    with torch.no_grad():
        pt = F.normalize(proj(t.to(device)), dim=-1)
        recall = float((scores(pt, patches, cfg["pool_temperature"]).argmax(1).cpu() == img_of).float().mean())
    meta = dict({k: str(v) for k, v in cfg.items()}, clip_model=model, clip_weights=str(checkpoint or "random"),
                spatial_model=fmeta.get("model", ""), spatial_weights=fmeta.get("weights", ""),
                spatial_blocks=fmeta.get("blocks", ""), captions=os.path.abspath(captions), prompt=prompt,
                final_loss=f"{loss_v:.6f}", recall_at_1=f"{recall:.4f}", pairs=str(len(pairs)), images=str(len(stems)))
    from safetensors.torch import save_file

    tensors = {"weight": proj.weight.detach().cpu().contiguous(), "bias": proj.bias.detach().cpu().contiguous()}
    write_atomic(out, lambda tmp: save_file(tensors, tmp, metadata=meta))
    if not quiet:
        print(f"trained on {len(pairs)} captions of {len(stems)} images in {time.time() - t0:.1f} s: caption -> image "
              f"recall@1 {recall:.3f}; wrote {out}")
    return meta


def read_projection(path: str) -> Tuple[torch.nn.Linear, Dict[str, str]]:
    from safetensors import safe_open

    if not os.path.isfile(path):
        raise FileNotFoundError(f"projection file not found: {path}")
    with safe_open(path, "pt") as f:
        meta = dict(f.metadata() or {})
        if not {"weight", "bias"} <= set(f.keys()) or "spatial_model" not in meta:
            raise PEDenseError(f"{path} is not a projection written by pe-dense text-projection")
        w, b = f.get_tensor("weight"), f.get_tensor("bias")
    lin = torch.nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        lin.weight.copy_(w)
        lin.bias.copy_(b)
    return lin.eval(), meta

"""The probe's feature cache: one safetensors file per image holding every tapped block's features (and the label),
written whole, so that an interrupted run resumes and a second probe reuses them without running the tower."""
from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Callable, Dict, Optional, Sequence

import torch

from ..io import write_atomic, write_json


class FeatureCache:
    """``root/KEY/NNNNN.safetensors``: one file per image holding ``block{i}`` (C, h, w) for every cached block, and
    ``settings.json``. KEY hashes what determines the features (model and weights, size, dtype, the image list); a
    file already there is reused, so an interrupted run resumes."""

    def __init__(self, root: str, settings: dict):
        self.settings = settings
        key = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
        self.dir = os.path.join(root, f"{settings['model']}-{settings['task']}-{key}")
        write_json(os.path.join(self.dir, "settings.json"), settings, sort_keys=True)

    def path(self, i: int) -> str:
        return os.path.join(self.dir, f"{i:06d}.safetensors")

    def has(self, i: int, blocks: Sequence[int]) -> bool:
        if not os.path.isfile(self.path(i)):
            return False
        from safetensors import safe_open

        try:
            with safe_open(self.path(i), "pt") as f:
                return all(f"block{b}" in f.keys() for b in blocks)
        except Exception:  # a file cut short: written again
            return False

    def write(self, i: int, feats: Dict[int, torch.Tensor], label: Optional[torch.Tensor] = None):
        from safetensors.torch import save_file

        tensors = {f"block{b}": t.contiguous() for b, t in feats.items()}
        if label is not None:
            tensors["label"] = label.contiguous()
        write_atomic(self.path(i), lambda tmp: save_file(tensors, tmp))

    def read(self, i: int, blocks: Sequence[int]) -> Dict[int, torch.Tensor]:
        from safetensors import safe_open

        with safe_open(self.path(i), "pt") as f:
            return {b: f.get_tensor(f"block{b}").float() for b in blocks}

    def label(self, i: int) -> torch.Tensor:
        """The image's label as cached beside its features (seg: int64 ids, -1 = not scored; depth: metres)."""
        from safetensors import safe_open

        with safe_open(self.path(i), "pt") as f:
            t = f.get_tensor("label")
        return t.long() if t.dtype == torch.int16 else t.float()

    def nbytes(self) -> int:
        return sum(os.path.getsize(os.path.join(self.dir, f)) for f in os.listdir(self.dir)
                   if f.endswith(".safetensors"))


def cache_features(model, images: Sequence[Callable[[], tuple]], cache: FeatureCache, blocks: Sequence[int],
                   device="cpu", dtype=torch.float16, desc="features", progress=True) -> float:
    """Runs the tower once per image not yet cached (all ``blocks`` tapped in that one forward) and writes its
    features (and its label, when the loader gives one); ``images[i]()`` -> (image (3, H, W), label or None).
    Returns the seconds spent in the tower."""
    from tqdm import tqdm

    todo = [i for i in range(len(images)) if not cache.has(i, blocks)]
    model = model.to(device).eval()
    spent = 0.0
    for i in tqdm(todo, desc=desc, unit="img", disable=not progress or not todo):
        x, label = images[i]()
        t0 = time.time()
        with torch.no_grad():
            maps = model(x[None].to(device))
        spent += time.time() - t0
        cache.write(i, {b: m[0].to("cpu", dtype) for b, m in zip(model.out_indices, maps)}, label)
    return spent

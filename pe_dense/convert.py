"""``pe-dense convert``: any supported checkpoint -> a pe_dense file (patch size and position table changed on the way)
or a Detectron2 checkpoint of the shipped configs' model."""
from __future__ import annotations

from typing import Optional

import torch

from .checkpoint import DETECTRON2_TOWER, load_checkpoint, read_state_dict, to_detectron2
from .errors import PEDenseError
from .factory import create_model
from .io import write_atomic

FORMATS = ("pe_dense", "detectron2")


def convert_checkpoint(src: str, dst: str, model: str = "PE-Spatial-T16-512", to: str = "pe_dense",
                       overrides: Optional[dict] = None):
    """Loads ``src`` (released, timm, safetensors, pe_dense, hub id) into ``model`` built with ``overrides`` and writes
    its weights to ``dst``: ``.safetensors`` or ``.pt`` (``to="pe_dense"``, the overrides recorded beside), or a
    Detectron2 ``.pth`` (``to="detectron2"``, patch 16 unless overridden, as every shipped Detectron2 config)."""
    if to not in FORMATS:
        raise PEDenseError(f"--to {to}: one of {', '.join(FORMATS)}")
    overrides = dict(overrides or {})
    if to == "detectron2":
        if not dst.endswith((".pth", ".pt")):
            raise PEDenseError(f"--to detectron2 writes a .pth file (Detectron2's checkpoint format), got {dst}")
        overrides.setdefault("patch_size", 16)
    tower = create_model(model, pretrained=None, **overrides)
    load_checkpoint(tower, read_state_dict(src))
    sd = {k: v.contiguous() for k, v in tower.state_dict().items()}
    grid = f"position table {tower.pos_grid}x{tower.pos_grid}"
    if to == "detectron2":
        d2 = to_detectron2(sd)
        write_atomic(dst, lambda p: torch.save({"model": d2, "__author__": "pe_dense"}, p))
        print(f"wrote {dst}: {model} as a Detectron2 checkpoint ({len(d2)} tensors under '{DETECTRON2_TOWER}'), "
              f"patch {tower.patch_size}, {grid}")
        return dst
    if dst.endswith(".safetensors"):
        from safetensors.torch import save_file

        write_atomic(dst, lambda p: save_file(sd, p, metadata={"model": model}))
    else:
        meta = {"model": model, **(overrides or {})}
        write_atomic(dst, lambda p: torch.save({"model": sd, "pe_dense": meta}, p))
    print(f"wrote {dst}: {model}, patch {tower.patch_size}, {grid} ({tower.pos_embed_mode}), {len(sd)} tensors")
    return dst

"""Layer-wise learning-rate decay for PE backbones, shared by the Detectron2 and MMSeg adapters.

Layer ids as the released detection recipe (``get_vit_lr_decay_rate_pev1``): patch embedding, position table, class
token and ``ln_pre`` are layer 0, block ``i`` is layer ``i + 1``, everything else (pyramid, heads) is layer
``depth + 1``; a parameter's lr is ``lr * decay ** (depth + 1 - layer_id)``.
"""
from __future__ import annotations

import re
from typing import Dict, List, Optional

from torch import nn

_EMBED_KEYS = ("conv1.", "positional_embedding", "class_embedding", "ln_pre.")
_NO_DECAY_KEYS = ("positional_embedding", "class_embedding")
_BLOCK = re.compile(r"resblocks\.(\d+)\.")


def layer_id(name: str, depth: int) -> int:
    m = _BLOCK.search(name)
    if m:
        return int(m.group(1)) + 1
    if any(k in name for k in _EMBED_KEYS):
        return 0
    return depth + 1


def lr_decay_rate(name: str, lr_decay_rate: float = 1.0, num_layers: int = 12) -> float:
    """Detectron2-style ``lr_factor_func`` (``optimizer.params.lr_factor_func = partial(lr_decay_rate, ...)``)."""
    return lr_decay_rate ** (num_layers + 1 - layer_id(name, num_layers))


def find_depth(model: nn.Module) -> int:
    for m in model.modules():
        if hasattr(m, "transformer") and hasattr(m, "depth") and hasattr(m, "conv1"):
            return int(m.depth)
    ids = [int(x.group(1)) for n, _ in model.named_parameters() for x in [_BLOCK.search(n)] if x]
    if not ids:
        raise ValueError("no PE blocks (transformer.resblocks.N) found in the model: pass depth=")
    return max(ids) + 1


def no_weight_decay(name: str, param) -> bool:
    """Norms, biases, LayerScale, the position table and the class token get no weight decay."""
    return param.ndim <= 1 or any(k in name for k in _NO_DECAY_KEYS)


def param_groups(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    layer_decay: float = 1.0,
    depth: Optional[int] = None,
    skip_no_decay: bool = True,
) -> List[Dict]:
    """Optimizer parameter groups: one per (layer id, decay or not), frozen parameters left out.

    Each group carries ``lr``, ``weight_decay``, ``lr_scale`` and ``layer_id`` (for schedulers that rescale lr).
    """
    depth = find_depth(model) if depth is None else depth
    groups: Dict[tuple, Dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lid = layer_id(name, depth)
        nd = skip_no_decay and no_weight_decay(name, p)
        g = groups.get((lid, nd))
        if g is None:
            scale = layer_decay ** (depth + 1 - lid)
            g = groups[(lid, nd)] = dict(params=[], lr=lr * scale, lr_scale=scale,
                                         weight_decay=0.0 if nd else weight_decay, layer_id=lid)
        g["params"].append(p)
    return [groups[k] for k in sorted(groups)]

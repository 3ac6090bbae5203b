"""Layer-wise learning-rate decay for PE backbones, shared by the Detectron2 and MMSeg adapters.

Layer ids as the released detection recipe (``get_vit_lr_decay_rate_pev1``), and only for the PE tower's own
parameters: patch embedding, position table, class token and ``ln_pre`` are layer 0, block ``i`` is layer ``i + 1``;
a tower parameter's lr is ``lr * decay ** (depth + 1 - layer_id)``. Every other parameter (pyramid, necks, heads,
even one named ``conv1``) keeps factor exactly 1.
"""
from __future__ import annotations

import re
from functools import partial
from typing import Dict, List, Optional

from torch import nn

from .checkpoint import DETECTRON2_TOWER
from .errors import PEDenseError

_EMBED = re.compile(r"^(conv1\.weight|conv1\.bias|positional_embedding|class_embedding|ln_pre\.(weight|bias))$")
_BLOCK = re.compile(r"^transformer\.resblocks\.(\d+)\.")
_NO_DECAY_KEYS = ("positional_embedding", "class_embedding")


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside DDP-style wrappers (``DistributedDataParallel``, mmengine's ``MMDistributedDataParallel``,
    ``DataParallel``: each holds it as ``.module``)."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return model


def tower_layer_id(name: str, depth: int) -> int:
    """Layer id of a parameter named as inside the tower (``conv1.weight``, ``transformer.resblocks.3.ln_1.bias``)."""
    m = _BLOCK.match(name)
    if m:
        return int(m.group(1)) + 1
    if _EMBED.match(name):
        return 0
    raise PEDenseError(f"{name!r} is not a parameter of a PE tower")


def lr_decay_rate(name: str, lr_decay_rate: float = 1.0, num_layers: int = 12, tower: str = DETECTRON2_TOWER) -> float:
    """Detectron2 ``lr_factor_func`` (``optimizer.params.lr_factor_func = partial(lr_decay_rate, ...)``): parameters
    under ``tower`` (the PE ViT's module path plus ".") decay by layer, everything else gets 1.0."""
    if not name.startswith(tower):
        return 1.0
    return lr_decay_rate ** (num_layers + 1 - tower_layer_id(name[len(tower):], num_layers))


def tower_lr_decay(model_name: str, lr_decay_rate: float):
    """Detectron2 ``lr_factor_func`` for the tower ``model_name``: layer decay over that tower's depth (read from
    the model table, so configs do not restate it): ``optimizer.params.lr_factor_func = L(tower_lr_decay)(
    model_name="${model.backbone.model_name}", lr_decay_rate=0.7)``."""
    from .specs import get_spec

    return partial(_lr_decay_rate, lr_decay_rate=lr_decay_rate, num_layers=get_spec(model_name).depth)


_lr_decay_rate = lr_decay_rate


def find_tower(model: nn.Module):
    """The one PE tower (``PEViT``) inside ``model`` and its module path."""
    from .modeling.vit import PEViT

    found = [(n, m) for n, m in model.named_modules() if isinstance(m, PEViT)]
    if len(found) != 1:
        raise PEDenseError(f"layer-wise lr decay needs exactly one PE tower (PEViT) in the model, found {len(found)}"
                           + (f" at {[n or '<root>' for n, _ in found]}" if found else ""))
    return found[0]


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

    Layer ids come from the PE tower's own parameters (found as the ``PEViT`` inside ``model``); every other
    parameter is layer ``depth + 1`` (lr factor 1). Each group carries ``lr``, ``weight_decay``, ``lr_scale`` and
    ``layer_id`` (for schedulers that rescale lr).
    """
    _, tower = find_tower(model)
    depth = tower.depth if depth is None else depth
    tower_ids = {id(p): tower_layer_id(n, depth) for n, p in tower.named_parameters()}
    groups: Dict[tuple, Dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        layer = tower_ids.get(id(p), depth + 1)
        decay_off = skip_no_decay and no_weight_decay(name, p)
        g = groups.get((layer, decay_off))
        if g is None:
            scale = layer_decay ** (depth + 1 - layer)
            g = groups[(layer, decay_off)] = dict(params=[], lr=lr * scale, lr_scale=scale,
                                                  weight_decay=0.0 if decay_off else weight_decay, layer_id=layer)
        g["params"].append(p)
    return [groups[k] for k in sorted(groups)]

"""``create_model``: a released PE tower by name, with the dense-prediction overrides."""
from __future__ import annotations

from typing import Union

from .errors import WrongTypeError
from .modeling.vit import PEViT
from .specs import get_spec

OVERRIDES = (
    "img_size", "patch_size", "out_indices", "window_size", "global_blocks", "pos_embed", "rope", "rope_grid",
    "use_cls_token", "return_class_token", "drop_path_rate", "act_checkpoint", "compile_blocks", "frozen_blocks",
    "ln_eps",
    "fit",
)


def model_kwargs(name: str, **overrides) -> dict:
    """The ``PEViT`` keyword arguments for a released tower plus overrides (unknown keys are an error)."""
    spec = get_spec(name)
    bad = sorted(set(overrides) - set(OVERRIDES))
    if bad:
        raise WrongTypeError(f"unknown override(s) {bad} for {spec.name}; valid: {', '.join(OVERRIDES)}")
    kw = dict(
        name=spec.name, patch_size=spec.patch_size, width=spec.width, depth=spec.depth, heads=spec.heads,
        mlp_dim=spec.mlp_dim, cls_token=spec.cls_token, ls_init=spec.ls_init, pretrain_grid=spec.grid,
    )
    kw.update(overrides)
    return kw


def create_model(name: str, pretrained: Union[None, bool, str] = None, **overrides) -> PEViT:
    """Builds a released PE vision tower as a dense backbone.

    Args:
        name: one of ``pe_dense.list_models()``.
        pretrained: None/False (random init), True (the released weights from the hub, ``facebook/NAME``),
            or a path / hub id / state dict for ``pe_dense.load_checkpoint``.
        overrides: ``PEViT`` arguments: img_size, patch_size, out_indices, window_size, global_blocks,
            pos_embed, rope, rope_grid, use_cls_token, return_class_token, drop_path_rate, act_checkpoint,
            compile_blocks, frozen_blocks, ln_eps, fit.
    """
    model = PEViT(**model_kwargs(name, **overrides))
    if pretrained:
        from .checkpoint import load_checkpoint

        load_checkpoint(model, get_spec(name).hub_id if pretrained is True else pretrained)
    return model

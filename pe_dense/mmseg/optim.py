"""Layer-wise lr decay for MMSeg (mmseg's own constructors accept only ConvNeXt/BEiT/MAE class names)."""
from __future__ import annotations

from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS, OPTIMIZERS

from ..errors import UnknownNameError
from ..optim import param_groups, unwrap_model


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class PELayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """``optim_wrapper = dict(constructor="PELayerDecayOptimWrapperConstructor", optimizer=dict(type="AdamW", ...),
    paramwise_cfg=dict(layer_decay_rate=0.9, num_layers=None))``: ``pe_dense.optim.param_groups`` (patch/pos/ln_pre
    = layer 0, block i = i + 1, heads = depth + 1; no weight decay on norms, biases, position table, class token).
    ``num_layers`` defaults to the backbone's depth."""

    def __call__(self, model):
        model = unwrap_model(model)
        wrapper_cfg = self.optim_wrapper_cfg.copy()
        wrapper_cfg.setdefault("type", "OptimWrapper")
        opt_cfg = self.optimizer_cfg.copy()
        pw = dict(self.paramwise_cfg or {})
        unknown = set(pw) - {"layer_decay_rate", "num_layers"}
        if unknown:
            raise UnknownNameError(f"PELayerDecayOptimWrapperConstructor: unknown paramwise_cfg keys {sorted(unknown)} "
                                   f"(valid: layer_decay_rate, num_layers)")
        groups = param_groups(model, lr=opt_cfg["lr"], weight_decay=opt_cfg.get("weight_decay", 0.0),
                              layer_decay=pw.get("layer_decay_rate", 1.0), depth=pw.get("num_layers"))
        for g in groups:
            g.pop("layer_id")
        opt_cfg["params"] = groups
        optimizer = OPTIMIZERS.build(opt_cfg)
        return OPTIM_WRAPPERS.build(wrapper_cfg, default_args=dict(optimizer=optimizer))

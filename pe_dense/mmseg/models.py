"""The PE tower as an MMSeg backbone (``PETower``; ``PEBackbone``, its former name, still builds it)."""
from __future__ import annotations

from typing import Optional, Union

from mmengine.model import BaseModule
from mmseg.registry import MODELS

from ..factory import create_model
from ..specs import get_spec


@MODELS.register_module(name=["PETower", "PEBackbone"])
class PETower(BaseModule):
    """Any released PE tower (``model_name``) with ``create_model`` overrides (``out_indices``, ``window_size``,
    ``frozen_blocks``, ...). Weights: ``pretrained=True`` (the released weights of ``model_name``, from the hub: the
    recipes' default), ``pretrained=PATH_OR_HUB_ID`` or ``init_cfg=dict(type="Pretrained",
    checkpoint=...)``, loaded through ``pe_dense.load_checkpoint`` (every released format). Returns a tuple of maps.

    ``fit`` defaults to ``"resize"``: MMSeg resizes every prediction to the input's size (in the loss, in whole and
    in slide inference), so the maps must cover exactly the input, also when its sides are not multiples of the
    patch (512 or 480 px with patch 14): an input that is not is resized up to the next multiple of the patch.
    (Zero-padding instead would stretch the predictions over the padding and shift them towards the top-left.)
    """

    def __init__(self, model_name: str = "PE-Spatial-B16-512", pretrained: Union[None, bool, str] = None,
                 init_cfg: Optional[dict] = None, **overrides):
        if init_cfg is not None and init_cfg.get("type") == "Pretrained":
            pretrained = pretrained or init_cfg.get("checkpoint")
            init_cfg = None
        super().__init__(init_cfg=init_cfg)
        # True: the released weights of model_name (its hub repository), so configs need not restate them
        self.pretrained = get_spec(model_name).hub_id if pretrained is True else pretrained
        overrides.setdefault("fit", "resize")
        self.vit = create_model(model_name, **overrides)
        self.out_channels = [self.vit.width] * len(self.vit.out_indices)

    def init_weights(self):
        if self.pretrained:
            from ..checkpoint import load_checkpoint

            load_checkpoint(self.vit, self.pretrained)
            self._is_init = True
        else:
            super().init_weights()

    def forward(self, x):
        return tuple(self.vit(x))


PEBackbone = PETower  # its former name (configs with type="PEBackbone" build a PETower)

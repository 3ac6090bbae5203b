"""``pe-dense convert --config CONFIG``: a whole detector checkpoint for a Detectron2 LazyConfig of this project, in
either layout (``pe_dense.detector_checkpoint``): ours (``--to detectron2``) or the released PE detection code's
(``--to detectron2-released``: perception_models' ``SimpleFeaturePyramid(net=PEv1_det(...))``, with the RoPE buffers
it stores), checked whole against the config's model on the way."""
from __future__ import annotations

import json
from functools import partial
from typing import Sequence

import torch

from ..checkpoint import read_state_dict
from ..detector_checkpoint import fit_detector, released_kwargs, to_released
from ..errors import PEDenseError
from ..io import write_atomic

DETECTOR_FORMATS = ("detectron2", "detectron2-released")


def build_on_meta(config: str, opts: Sequence[str] = ()):
    """The config's model on the meta device (shapes and structure, no memory: a G detector too)."""
    from detectron2.config import LazyConfig, instantiate

    cfg = LazyConfig.apply_overrides(LazyConfig.load(config), list(opts))
    heads = cfg.model.roi_heads
    for p in heads.get("box_predictors") or [heads.box_predictor]:
        if p.get("use_fed_loss"):  # its class weights come from the file: LVIS's annotations need not be here
            p.get_fed_loss_cls_weights = partial(torch.ones, heads.num_classes)
    with torch.device("meta"):
        model = instantiate(cfg.model)
    from .train import _pe_backbone

    backbone = _pe_backbone(model)
    if backbone is None:
        raise PEDenseError(f"{config}: the model's backbone is not pe_dense's PEViTDetBackbone; --config takes a "
                           f"Detectron2 config of this project (configs/detectron2/...)")
    return cfg, model, backbone


def convert_detector(src: str, dst: str, config: str, to: str = "detectron2", opts: Sequence[str] = ()) -> str:
    """Reads a detector checkpoint (our layout or the released one), checks it whole against ``config``'s model
    (every tensor of the model from the file; RoPE buffers checked), and writes it to ``dst`` (``.pth``) in the
    layout ``to``. Notes on what was mapped or left out are printed."""
    if to not in DETECTOR_FORMATS:
        raise PEDenseError(f"--to {to} with --config: one of {', '.join(DETECTOR_FORMATS)}")
    if not dst.endswith((".pth", ".pt")):
        raise PEDenseError(f"a Detectron2 checkpoint is a .pth file, got {dst}")
    cfg, model, backbone = build_on_meta(config, opts)
    square = backbone.padding_constraints["square_size"]
    sd, notes = fit_detector(read_state_dict(src), model.state_dict(), backbone.fpn, square, backbone.net.name,
                             whole=True)
    layout = "ours (backbone.fpn.net.*, backbone.fpn.stages.*)"
    if to == "detectron2-released":
        sd, more = to_released(sd, backbone.fpn, square)
        notes += more
        layout = "the released PEv1_det's (backbone.net.*, backbone.simfp_*)"
    sd = {k: v.contiguous() for k, v in sd.items()}
    write_atomic(dst, lambda p: torch.save({"model": sd, "__author__": "pe_dense"}, p))
    for note in notes:
        print(f"  {note}")
    print(f"wrote {dst}: {backbone.net.name} detector of {config} in {layout}, {len(sd)} tensors")
    if to == "detectron2-released":
        kw = released_kwargs(backbone.fpn, square)
        b = cfg.model.backbone
        print("  the released code builds it as SimpleFeaturePyramid(net=PEv1_det(" + json.dumps(kw)[1:-1]
              + f"), in_feature='last_feat', out_channels={b.out_channels}, scale_factors={tuple(b.scale_factors)}, "
              f"top_block={'LastLevelMaxPool()' if b.top_block else None}, norm={b.norm!r}, square_pad={square}) "
              "in the config's meta-architecture")
    return dst

"""PE-Spatial-G Mask R-CNN on COCO, 36 epochs: the published recipe (COCO box/mask AP 57.8 / 50.3).

As ``apps/detection/projects/ViTDet/configs/COCO/mask_rcnn_PEspatial_G_coco36ep.py`` of perception_models:
patch 14 -> 16 (bicubic), windows of 32 with global blocks 12, 24, 36, 49, the 32x32 position table tiled,
RoPE per window (positions 1..32) and interpolated in the global blocks, drop path 0.5, activation checkpointing,
AdamW lr 5e-5, weight decay 0.1 on every parameter (no overrides), layer decay 0.9 over 50 blocks, batch 64.
Two settings of the released config have no effect in the released code and are not reproduced: ``use_rel_pos=True``
(its Attention ignores it) and the LayerNorm eps 1e-6 (its blocks build ``LayerNorm(d)`` with the default 1e-5).
"""
from ..common.pe_vitdet import dataloader, model, optimizer, schedule, train  # noqa: F401

model.backbone.model_name = "PE-Spatial-G14-448"
model.backbone.vit.window_size = 32
model.backbone.vit.global_blocks = [12, 24, 36, 49]
model.backbone.vit.drop_path_rate = 0.5
model.backbone.vit.act_checkpoint = True
optimizer.lr = 5e-5
optimizer.params.overrides = {}
optimizer.params.weight_decay_norm = None
optimizer.params.lr_factor_func.lr_decay_rate = 0.9
train.max_iter, lr_multiplier = schedule(36)

"""PE-Spatial-B16-512 DETA on COCO alone, 24 epochs at 1024 px (no Objects365 stages: the released code has G only).

Derived from the released G recipe's COCO stage: the same model (900 queries, 6 + 6 layers, the released levels, NMS),
loss and augmentation, at 1024 px (the size of this tower's Mask R-CNN recipe), the tower's ViTDet layout (windows of
16 tokens, global blocks [2, 5, 8, 11], drop path 0.1)
and DETA's own COCO-only schedule for a backbone without detection pretraining (Ouyang-Zhang et al.: 24 epochs,
x0.1 after 20, lr 2e-4, backbone 2e-5), batch 64.
Not trained here (no GPU, no COCO): no figure is claimed for it.
"""
from pe_dense.detectron2.deta.recipe import step_schedule

from ..common.deta import dataloader, model, optimizer, train, tta  # noqa: F401

model.backbone.model_name = "PE-Spatial-B16-512"
model.backbone.vit.window_size = 16
model.backbone.vit.global_blocks = [2, 5, 8, 11]
model.backbone.vit.drop_path_rate = 0.1
optimizer.lr = 2e-4
optimizer.params.lr_factor_func.lr_backbone = 2e-5
train.max_iter, lr_multiplier = step_schedule(24, 20, 118287, 64)
train.output_dir = "output/deta_pe_spatial_b_coco_1024"

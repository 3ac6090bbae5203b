"""PE-Spatial-L14-448 Mask R-CNN on COCO, 100 epochs (derived recipe; see projects/detection/README.md)."""
from ..common.pe_vitdet import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.backbone.model_name = "PE-Spatial-L14-448"
model.backbone.vit.global_blocks = [5, 11, 17, 23]
model.backbone.vit.drop_path_rate = 0.4
optimizer.params.lr_factor_func.lr_decay_rate = 0.8

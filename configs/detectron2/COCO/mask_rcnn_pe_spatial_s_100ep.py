"""PE-Spatial-S16-512 Mask R-CNN on COCO, 100 epochs (derived recipe; see projects/detection/README.md)."""
from ..common.pe_vitdet import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.backbone.model_name = "PE-Spatial-S16-512"
model.backbone.vit.drop_path_rate = 0.05

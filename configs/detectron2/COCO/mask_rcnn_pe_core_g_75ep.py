"""PE-Core-G Mask R-CNN on COCO, 75 epochs: the published recipe (COCO box/mask AP 57.0 / 49.8).

The PE-Spatial-G recipe with the PE-Core-G tower (its image-level heads dropped), 75 epochs.
"""
from .mask_rcnn_pe_spatial_g_36ep import dataloader, model, optimizer, schedule, train  # noqa: F401

model.backbone.model_name = "PE-Core-G14-448"
train.max_iter, lr_multiplier = schedule(75)

"""Cascade Mask R-CNN variant of mask_rcnn_pe_spatial_g_36ep.py (the published PE figures are Mask R-CNN)."""
from ..common.cascade import to_cascade
from .mask_rcnn_pe_spatial_g_36ep import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

to_cascade(model)

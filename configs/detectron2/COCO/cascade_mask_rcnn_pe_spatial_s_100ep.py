"""Cascade Mask R-CNN variant of mask_rcnn_pe_spatial_s_100ep.py."""
from ..common.cascade import to_cascade
from .mask_rcnn_pe_spatial_s_100ep import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

to_cascade(model)

"""PE-Spatial-B16-512 Mask R-CNN on COCO, 100 epochs (derived recipe; see projects/detection/README.md)."""
# the common file's defaults are this recipe (tower B, windows of 16 with global blocks 2, 5, 8, 11, drop path 0.1,
# layer decay 0.7, AdamW 1e-4, 100 epochs); the other sizes override what differs
from ..common.pe_vitdet import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401


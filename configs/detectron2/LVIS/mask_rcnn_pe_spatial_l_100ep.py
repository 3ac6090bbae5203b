"""PE-Spatial-L Mask R-CNN on LVIS v1, 100 epochs (derived; ViTDet-L's LVIS recipe)."""
from ..COCO.mask_rcnn_pe_spatial_l_100ep import model, optimizer, train  # noqa: F401
from ..common.lvis import ITERS_100EP_LVIS, MILESTONES_100EP_LVIS, dataloader, to_lvis  # noqa: F401
from ..common.pe_vitdet import schedule

to_lvis(model)
optimizer.lr = 2e-4
train.max_iter, lr_multiplier = schedule(100, ITERS_100EP_LVIS, MILESTONES_100EP_LVIS)
train.eval_period = 30000

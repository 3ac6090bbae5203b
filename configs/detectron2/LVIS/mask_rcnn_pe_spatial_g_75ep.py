"""PE-Spatial-G Mask R-CNN on LVIS v1, 75 epochs: the published recipe (LVIS box/mask AP 54.2 / 49.3)."""
from ..COCO.mask_rcnn_pe_spatial_g_36ep import model, optimizer, schedule, train  # noqa: F401
from ..common.lvis import ITERS_100EP_LVIS, dataloader, to_lvis  # noqa: F401

to_lvis(model)
train.max_iter, lr_multiplier = schedule(75, ITERS_100EP_LVIS)
train.eval_period = 30000

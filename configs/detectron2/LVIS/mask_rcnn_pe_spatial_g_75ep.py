"""PE-Spatial-G Mask R-CNN on LVIS v1, 75 epochs: the published recipe (LVIS box/mask AP 54.2 / 49.3).

As ``apps/detection/projects/ViTDet/configs/LVIS/mask_rcnn_PEspatial_G_lvis75ep.py`` of perception_models: the COCO
recipe (see ../COCO/mask_rcnn_pe_spatial_g_36ep.py) with LVIS data and heads, on the released schedule, which keeps
the COCO iteration counts: 184375 * 3 // 4 = 138281 iterations, milestones 122916 / 133159, warm-up 250 / 184375.
"""
from ..COCO.mask_rcnn_pe_spatial_g_36ep import model, optimizer, schedule, train  # noqa: F401
from ..common.lvis import dataloader, to_lvis  # noqa: F401

to_lvis(model)
train.max_iter, lr_multiplier = schedule(75)
train.eval_period = 30000

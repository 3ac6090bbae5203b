"""PE-Core-G Mask R-CNN on LVIS v1, 75 epochs: the released recipe
(``apps/detection/projects/ViTDet/configs/LVIS/mask_rcnn_PEcore_G_lvis75ep.py`` of perception_models).

The PE-Spatial-G LVIS recipe with the PE-Core-G tower (no LayerScale; its image-level heads dropped).
"""
from ..COCO.mask_rcnn_pe_core_g_75ep import model, optimizer, schedule, train  # noqa: F401
from ..common.lvis import dataloader, to_lvis  # noqa: F401

to_lvis(model)
train.max_iter, lr_multiplier = schedule(75)
train.eval_period = 30000

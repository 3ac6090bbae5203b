"""PE-Spatial-G14-448 Mask R-CNN on your own COCO-format data (the published COCO recipe of PE-Spatial-G; see
common/custom_data.py):

  python tools/train_net.py --config-file configs/detectron2/custom/mask_rcnn_pe_spatial_g_custom.py \
      dataset.train_json=A.json dataset.train_images=DIR dataset.val_json=B.json dataset.val_images=DIR
"""
from ..COCO.mask_rcnn_pe_spatial_g_36ep import dataloader, model, optimizer, train  # noqa: F401
from ..common.custom_data import dataset, use_custom_data  # noqa: F401

lr_multiplier = use_custom_data(dataloader, model, train)

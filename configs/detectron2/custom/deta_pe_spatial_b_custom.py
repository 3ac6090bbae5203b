"""PE-Spatial-B16-512 DETA on your own COCO-format data, boxes (the COCO recipe of this size at 1024 px,
its model, augmentation and optimizer; see common/custom_data.py):

  python tools/train_net.py --config-file configs/detectron2/custom/deta_pe_spatial_b_custom.py \
      dataset.train_json=A.json dataset.train_images=DIR dataset.val_json=B.json dataset.val_images=DIR \
      train.max_iter=5000 dataloader.train.total_batch_size=16
"""
from ..common.custom_data import dataset, use_custom_data_deta  # noqa: F401
from ..DETA.deta_pe_spatial_b_coco_1024_24ep import dataloader, model, optimizer, train, tta  # noqa: F401

lr_multiplier = use_custom_data_deta(dataloader, model, train)

"""PE-Spatial-G DETA on your own COCO-format data, boxes: the released G model (windows of 24 over the 24 x 24 table,
global blocks 12, 24, 36, 49, activation checkpointing) at the COCO stage's 1728 px with its augmentation and
optimizer, from the PE-Spatial-G tower (see common/custom_data.py):

  python tools/train_net.py --config-file configs/detectron2/custom/deta_pe_spatial_g_custom.py \
      dataset.train_json=A.json dataset.train_images=DIR dataset.val_json=B.json dataset.val_images=DIR

To start from a trained DETA instead (e.g. stage 2's Objects365 model_final.pth, made at 1536 px: set the size to
match its RoPE tables, or the released COCO deta_coco_1824pix.pth with the 1824 stage's sizes), keep its tower,
levels and transformer and train new class heads:
      train.init_checkpoint=FILE 'model.reinit=["class_embed.","transformer.decoder.class_embed."]'
"""
from ..common.custom_data import dataset, use_custom_data_deta  # noqa: F401
from ..DETA.deta_pe_spatial_g_coco_1728_12ep import dataloader, model, optimizer, train, tta  # noqa: F401

model.reinit = []
lr_multiplier = use_custom_data_deta(dataloader, model, train)

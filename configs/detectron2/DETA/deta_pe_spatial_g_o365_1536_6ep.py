"""PE-Spatial-G DETA, stage 2 of 4: Objects365, 6 more epochs at 1536 px (the released
``pretrain_continue_spatial_Gwin384_o365ep6_1536pix_16node.sh``), from stage 1's ``model_final.pth`` (every tensor,
heads included: the same dataset); lr 5e-5 and backbone 5e-5, x0.1 after 5 epochs.

  python tools/train_net.py --config-file configs/detectron2/DETA/deta_pe_spatial_g_o365_1536_6ep.py \
      train.init_checkpoint=output/deta_pe_spatial_g_o365_1024/model_final.pth
"""
from pe_dense.detectron2.deta.recipe import step_schedule, test_augmentations, train_augmentations
from pe_dense.detectron2.deta.tta import released_tta
from pe_dense.detectron2.objects365 import OBJECTS365_TRAIN_IMAGES

from .deta_pe_spatial_g_o365_1024_12ep import dataloader, model, optimizer, train  # noqa: F401

image_size = 1536
dataloader.train.mapper.augmentations = train_augmentations(image_size)
dataloader.test.mapper.augmentations = test_augmentations(image_size)
model.backbone.square_pad = image_size
optimizer.params.lr_factor_func.lr_backbone = 5e-5
train.max_iter, lr_multiplier = step_schedule(6, 5, OBJECTS365_TRAIN_IMAGES, 128)
train.init_checkpoint = "output/deta_pe_spatial_g_o365_1024/model_final.pth"  # stage 1's output (required)
train.output_dir = "output/deta_pe_spatial_g_o365_1536"
tta = released_tta(image_size)  # --eval-only --tta

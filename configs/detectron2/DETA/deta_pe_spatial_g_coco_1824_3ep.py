"""PE-Spatial-G DETA, stage 4 of 4: COCO, 3 more epochs at 1824 px (the released
``finetune_further_spatial_Gwin384_cocoep3_1824pix_8node.sh``), from stage 3's ``model_final.pth`` with every tensor
kept (``--keep_class_embed``); no drop path, SGD (momentum 0.9) at lr 5e-5 and backbone 5e-5, x0.1 after 2 epochs.
Published: COCO val box AP 65.2 (66.0 with TTA), the released ``deta_coco_1824pix.pth``, which this config evaluates:

  python tools/train_net.py --config-file configs/detectron2/DETA/deta_pe_spatial_g_coco_1824_3ep.py --eval-only \
      train.init_checkpoint=deta_coco_1824pix.pth
"""
import torch
from detectron2.config import LazyCall as L

from pe_dense.detectron2.deta.recipe import step_schedule, test_augmentations, train_augmentations
from pe_dense.detectron2.deta.tta import released_tta

from .deta_pe_spatial_g_coco_1728_12ep import dataloader, model, optimizer, train  # noqa: F401

image_size = 1824
dataloader.train.mapper.augmentations = train_augmentations(image_size)
dataloader.test.mapper.augmentations = test_augmentations(image_size)  # longest side 1792, padded to 1824
model.backbone.square_pad = image_size
model.backbone.vit.drop_path_rate = 0.0
model.reinit = []
optimizer = L(torch.optim.SGD)(params=optimizer.params, lr=5e-5, momentum=0.9, weight_decay=1e-4)
train.max_iter, lr_multiplier = step_schedule(3, 2, 118287, 64)
train.init_checkpoint = "output/deta_pe_spatial_g_coco_1728/model_final.pth"  # stage 3's output (required)
train.output_dir = "output/deta_pe_spatial_g_coco_1824"
tta = released_tta(image_size)  # --eval-only --tta

"""PE-Spatial-G DETA, stage 3 of 4: COCO, 12 epochs at 1728 px (the released
``finetune_spatial_Gwin384_cocoep12_1728pix_8node.sh``), from stage 2's ``model_final.pth``: the tower, levels and
transformer from it; the class heads re-initialized for COCO's 80 classes (the script's ``--finetune`` without
``--keep_class_embed`` drops ``class_embed``: here they are left at their initialization and the load says so by
name); drop path 0.4, lr 5e-5, backbone 5e-5, x0.1 after 10 epochs, batch 64 (8 nodes x 8 GPUs), bf16.

  python tools/train_net.py --config-file configs/detectron2/DETA/deta_pe_spatial_g_coco_1728_12ep.py \
      train.init_checkpoint=output/deta_pe_spatial_g_o365_1536/model_final.pth
"""
from pe_dense.detectron2.deta.recipe import step_schedule, test_augmentations, train_augmentations
from pe_dense.detectron2.deta.tta import released_tta

from ..common.deta import dataloader, model, optimizer, train  # noqa: F401
from .deta_pe_spatial_g_o365_1024_12ep import model as _g

image_size = 1728
dataloader.train.mapper.augmentations = train_augmentations(image_size)
dataloader.test.mapper.augmentations = test_augmentations(image_size)
model.backbone = _g.backbone
model.backbone.vit.drop_path_rate = 0.4
model.backbone.square_pad = image_size
model.num_classes = 80
model.reinit = ["class_embed.", "transformer.decoder.class_embed."]  # a new dataset's classes (the released finetune)
train.max_iter, lr_multiplier = step_schedule(12, 10, 118287, 64)
train.init_checkpoint = "output/deta_pe_spatial_g_o365_1536/model_final.pth"  # stage 2's output (required)
train.output_dir = "output/deta_pe_spatial_g_coco_1728"
tta = released_tta(image_size)  # --eval-only --tta

"""PE-Spatial-G DETA, stage 1 of 4: Objects365 (v2), 12 epochs at 1024 px (the released
``pretrain_spatial_Gwin384_o365ep12_1024pix_16node.sh``): the tower with windows of 24 tokens over the 24 x 24 position
table (``Gwin384``: a 384 px pretraining grid at patch 16), global blocks 12, 24, 36, 49, the table tiled, RoPE per
window spanning 16 positions (``pt_hw_seq_len=16``), LayerScale, drop path 0.5, activation checkpointing; lr 5e-5,
backbone 2e-4 (the script's ``--lr_backbone``), x0.1 after 10 epochs, batch 128 (16 nodes x 8 GPUs x 1 image), bf16.
Objects365's 365 classes; the heads are new (``train.init_checkpoint`` = the PE-Spatial-G tower weights).

  python tools/train_net.py --config-file configs/detectron2/DETA/deta_pe_spatial_g_o365_1024_12ep.py \
      --num-gpus 8 --num-machines 16 ...   (Objects365 under $DETECTRON2_DATASETS/objects365, see projects/detection)
"""
from pe_dense.detectron2.deta.recipe import step_schedule, test_augmentations, train_augmentations
from pe_dense.detectron2.deta.tta import released_tta
from pe_dense.detectron2.objects365 import OBJECTS365_TRAIN_IMAGES, register_objects365

from ..common.deta import dataloader, model, optimizer, train  # noqa: F401

register_objects365()
image_size = 1024
dataloader.train.dataset.names = "objects365_v2_train"
dataloader.test.dataset.names = "objects365_v2_val"
dataloader.train.mapper.augmentations = train_augmentations(image_size)
dataloader.test.mapper.augmentations = test_augmentations(image_size)
dataloader.train.total_batch_size = 128

model.backbone.model_name = "PE-Spatial-G14-448"
model.backbone.vit.img_size = 384          # Gwin384: the table held (and tiled) at 24 x 24 tokens
model.backbone.vit.window_size = 24
model.backbone.vit.global_blocks = [12, 24, 36, 49]
model.backbone.vit.drop_path_rate = 0.5
model.backbone.vit.act_checkpoint = True
model.backbone.square_pad = image_size
model.num_classes = 365

optimizer.params.lr_factor_func.lr_backbone = 2e-4
train.max_iter, lr_multiplier = step_schedule(12, 10, OBJECTS365_TRAIN_IMAGES, 128)
train.output_dir = "output/deta_pe_spatial_g_o365_1024"
tta = released_tta(image_size)  # --eval-only --tta

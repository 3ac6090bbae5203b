"""Shared parts of the PE detection configs: ViTDet's Mask R-CNN with a PE backbone, LSJ data, AdamW with
layer-wise lr decay, the ViTDet step schedule. Size-specific files set the backbone and the schedule."""
from detectron2 import model_zoo
from detectron2.config import LazyCall as L

from pe_dense.detectron2 import PEViTDetBackbone
from pe_dense.detectron2.schedules import ITERS_100EP, MILESTONES_100EP, schedule  # noqa: F401 (for the size configs)
from pe_dense.optim import tower_lr_decay

from .coco_loader_lsj import dataloader  # noqa: F401

model = model_zoo.get_config("common/models/mask_rcnn_vitdet.py").model
model.backbone = L(PEViTDetBackbone)(
    model_name="PE-Spatial-B16-512",
    vit=dict(
        patch_size=16,           # patch-14 towers are converted to 16 at load time (bicubic), as the released recipe
        window_size=16,
        global_blocks=[2, 5, 8, 11],
        pos_embed="tile",        # the position table, resized to the window, tiled per window
        rope="interpolate",      # RoPE positions spanning the pretraining grid, per window and in global blocks
        drop_path_rate=0.1,
        act_checkpoint=False,
    ),
    out_channels=256,
    scale_factors=(4.0, 2.0, 1.0, 0.5),
    top_block=True,
    norm="LN",
    square_pad=1024,
)
# PE normalization (RGB; the released recipe rounds 127.5 to 127)
model.pixel_mean = [127.0, 127.0, 127.0]
model.pixel_std = [127.0, 127.0, 127.0]
model.input_format = "RGB"

train = model_zoo.get_config("common/train.py").train
train.amp.enabled = True
train.amp.precision = "float16"  # Detectron2's AMPTrainer, as the released recipe (loss-scaled); or "bfloat16"
train.ddp.fp16_compression = True
# PE weights for the backbone: by default the tower's released weights (its model name: fetched from the hub),
# or a hub id, a released .pt, a timm or safetensors file (tools/train_net.py loads it through
# pe_dense.load_checkpoint); a Detectron2 checkpoint of the whole model is loaded as such.
train.init_checkpoint = "${model.backbone.model_name}"

optimizer = model_zoo.get_config("common/optim.py").AdamW
optimizer.lr = 1e-4
# layer decay over the tower's depth, which follows from model.backbone.model_name
optimizer.params.lr_factor_func = L(tower_lr_decay)(model_name="${model.backbone.model_name}", lr_decay_rate=0.7)
optimizer.params.overrides = {"positional_embedding": {"weight_decay": 0.0}, "class_embedding": {"weight_decay": 0.0}}

# ViTDet's COCO schedule (pe_dense.detectron2.schedules: 100 epochs = 184375 iterations at 64 images, two lr
# steps, 250 warm-up iterations), shortened by schedule(epochs) as the released PE configs do
train.max_iter, lr_multiplier = schedule(100)

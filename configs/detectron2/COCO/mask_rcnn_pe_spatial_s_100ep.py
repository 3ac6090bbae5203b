"""PE-Spatial-S16-512 Mask R-CNN on COCO, 100 epochs (derived recipe; see projects/detection/README.md)."""
from functools import partial

from pe_dense.optim import lr_decay_rate

from ..common.pe_vitdet import dataloader, model, optimizer, schedule, train  # noqa: F401

model.backbone.model_name = "PE-Spatial-S16-512"
model.backbone.vit.window_size = 16
model.backbone.vit.global_blocks = [2, 5, 8, 11]
model.backbone.vit.drop_path_rate = 0.05
train.init_checkpoint = "facebook/PE-Spatial-S16-512"
optimizer.lr = 1e-4
optimizer.params.lr_factor_func = partial(lr_decay_rate, lr_decay_rate=0.7, num_layers=12)
train.max_iter, lr_multiplier = schedule(100)

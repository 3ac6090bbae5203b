"""PE-Spatial-L14-448 Mask R-CNN on COCO, 100 epochs (derived recipe; see projects/detection/README.md)."""
from functools import partial

from pe_dense.optim import lr_decay_rate

from ..common.pe_vitdet import dataloader, model, optimizer, schedule, train  # noqa: F401

model.backbone.model_name = "PE-Spatial-L14-448"
model.backbone.vit.window_size = 16
model.backbone.vit.global_blocks = [5, 11, 17, 23]
model.backbone.vit.drop_path_rate = 0.4
train.init_checkpoint = "facebook/PE-Spatial-L14-448"
optimizer.lr = 1e-4
optimizer.params.lr_factor_func = partial(lr_decay_rate, lr_decay_rate=0.8, num_layers=24)
train.max_iter, lr_multiplier = schedule(100)

"""The embedded default for DETA: PE-Spatial-T DETA on the generated shapes set (pe_shapes_*), small enough for a CPU.

The released recipe scaled down: 128 px squares (flip, then a resize of the short side to 96..128, longest at most
128, or a crop of 64..128 px resized to 128: the released multi-scale rule at this size), windows of 4 tokens with
global blocks 5 and 11, a transformer of d 64 (1 encoder, 2 decoder layers, FFN 256, 4 heads), 50 queries,
batch 4, AdamW at 2e-4 (backbone too), random init (set train.init_checkpoint to PE weights to start from them).
"""
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.evaluation import COCOEvaluator

from pe_dense.detectron2 import register_shapes_coco
from pe_dense.detectron2.deta.recipe import RandomSelect, step_schedule
from pe_dense.detectron2.deta.tta import released_tta

from ..common.deta import dataloader, model, optimizer, train  # noqa: F401

register_shapes_coco()  # generates the set once (under $PE_DENSE_DATA or ~/.cache/pe_dense) and registers it

image_size = 128
dataloader.train.dataset.names = "pe_shapes_train"
dataloader.test.dataset.names = "pe_shapes_val"
dataloader.train.mapper.augmentations = [
    L(T.RandomFlip)(horizontal=True),
    L(RandomSelect)(
        first=[L(T.ResizeShortestEdge)(short_edge_length=[96, 112, 128], max_size=image_size, sample_style="choice")],
        second=[L(T.RandomCrop)(crop_type="absolute_range", crop_size=(64, 128)),
                L(T.ResizeShortestEdge)(short_edge_length=image_size, max_size=image_size)],
    ),
]
dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=image_size, max_size=image_size)]
dataloader.train.total_batch_size = 4
dataloader.train.num_workers = 0
dataloader.test.num_workers = 0
dataloader.evaluator = L(COCOEvaluator)(dataset_name="${..test.dataset.names}", output_dir="${train.output_dir}")

model.backbone.model_name = "PE-Spatial-T16-512"
model.backbone.vit.window_size = 4
model.backbone.vit.global_blocks = [5, 11]
model.backbone.vit.drop_path_rate = 0.0
model.backbone.square_pad = image_size
model.num_classes = 3
model.num_queries = 50
model.hidden_dim = 64
model.nheads = 4
model.enc_layers = 1
model.dec_layers = 2
model.dim_feedforward = 256
model.class_ids = None  # heads trained here

train.init_checkpoint = ""
train.output_dir = "output/detectron2_deta_shapes"
train.device = "cpu"
train.amp.enabled = False
train.log_period = 20
train.checkpointer.period = 100
optimizer.lr = 2e-4
optimizer.params.lr_factor_func.lr_backbone = 2e-4
train.max_iter, lr_multiplier = step_schedule(300, 270, 4, 4)  # 300 iterations (64 images), x0.1 after 270
train.eval_period = train.max_iter
tta = released_tta(image_size)  # --eval-only --tta

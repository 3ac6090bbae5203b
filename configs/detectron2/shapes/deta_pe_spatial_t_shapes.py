"""The embedded default for DETA: PE-Spatial-T DETA on the generated shapes set, small enough for a CPU.

The set's files are read the way a user's own data is (``common/custom_data.py``: the ``dataset.*`` keys, classes
from the train file, ``COCOEvaluator`` on the val file), so this config is also the own-data path at CPU size:
``dataset.train_json=A.json dataset.train_images=DIR dataset.val_json=B.json dataset.val_images=DIR`` trains it on
yours.

The released recipe scaled down: 128 px squares (flip, then a resize of the short side to 96..128, longest at most
128, or a crop of 64..128 px resized to 128: the released multi-scale rule at this size), windows of 4 tokens with
global blocks 5 and 11, a transformer of d 64 (1 encoder, 2 decoder layers, FFN 256, 4 heads), 50 queries,
batch 4, 600 iterations (38 epochs of the 64 images), AdamW at 5e-4 (backbone too) with gradients clipped to a
norm of 1.0 (the released 0.1 is for towers that start trained: from random initialization it learned about half as
far in this many steps), x0.1 after 500 (10/12 of the run, as released), seed 0, random init (set
train.init_checkpoint to PE weights to start from them). Measured: projects/detection/README.md#deta.
"""
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from pe_dense.detectron2 import register_shapes_coco
from pe_dense.detectron2.deta.recipe import RandomSelect
from pe_dense.detectron2.deta.tta import released_tta

from ..common.custom_data import use_custom_data_deta
from ..common.deta import dataloader, model, optimizer, train  # noqa: F401

files = register_shapes_coco()  # generates the set once (under $PE_DENSE_DATA or ~/.cache/pe_dense)
dataset = dict(zip(("train_json", "train_images", "val_json", "val_images"),
                   files["pe_shapes_train"] + files["pe_shapes_val"]))
lr_multiplier = use_custom_data_deta(dataloader, model, train)  # x0.1 after 10/12 of train.max_iter

image_size = 128
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

model.backbone.model_name = "PE-Spatial-T16-512"
model.backbone.vit.window_size = 4
model.backbone.vit.global_blocks = [5, 11]
model.backbone.vit.drop_path_rate = 0.0
model.backbone.square_pad = image_size
model.num_queries = 50
model.hidden_dim = 64
model.nheads = 4
model.enc_layers = 1
model.dec_layers = 2
model.dim_feedforward = 256

train.init_checkpoint = ""
train.output_dir = "output/detectron2_deta_shapes"
train.device = "cpu"
train.amp.enabled = False
train.log_period = 20
train.checkpointer.period = 100
train.seed = 0
optimizer.lr = 5e-4
optimizer.params.lr_factor_func.lr_backbone = 5e-4
optimizer.max_norm = 1.0
train.max_iter = 600  # batch 4: 38 epochs of the 64 images
tta = released_tta(image_size)  # --eval-only --tta

"""The embedded default for detection: PE-Spatial-T Mask R-CNN on the generated shapes set (pe_shapes_*).

Small enough for a CPU: 256 px images (LSJ at 256), windows of 8 with global blocks 5 and 11, batch 4, random init
(no weights can be downloaded here; set train.init_checkpoint to PE weights to start from them).
"""
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.evaluation import COCOEvaluator
from detectron2.layers import ShapeSpec

from pe_dense.detectron2 import register_shapes_coco

from ..common.pe_vitdet import dataloader, model, optimizer, schedule, train  # noqa: F401

register_shapes_coco()  # generates the set once (under $PE_DENSE_DATA or ~/.cache/pe_dense) and registers it

image_size = 256
dataloader.train.dataset.names = "pe_shapes_train"
dataloader.test.dataset.names = "pe_shapes_val"
dataloader.train.mapper.augmentations = [
    L(T.RandomFlip)(horizontal=True),
    L(T.ResizeScale)(min_scale=0.5, max_scale=1.5, target_height=image_size, target_width=image_size),
    L(T.FixedSizeCrop)(crop_size=(image_size, image_size), pad=False),
]
dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=image_size, max_size=image_size)]
dataloader.train.total_batch_size = 4
dataloader.train.num_workers = 0
dataloader.test.num_workers = 0
dataloader.evaluator = L(COCOEvaluator)(dataset_name="${..test.dataset.names}", output_dir="${train.output_dir}")

model.backbone.model_name = "PE-Spatial-T16-512"
model.backbone.vit.window_size = 8
model.backbone.vit.global_blocks = [5, 11]
model.backbone.vit.drop_path_rate = 0.0
model.backbone.square_pad = image_size
# a lighter head than ViTDet's (128 channels, 4conv1fc of 128/512): 3 classes, 256 px
C = 128
model.backbone.out_channels = C
model.proposal_generator.head.in_channels = C
model.roi_heads.box_head.input_shape = ShapeSpec(channels=C, height=7, width=7)
model.roi_heads.box_head.conv_dims = [C, C, C, C]
model.roi_heads.box_head.fc_dims = [512]
model.roi_heads.box_predictor.input_shape = ShapeSpec(channels=512)
model.roi_heads.mask_head.input_shape = ShapeSpec(channels=C, width=14, height=14)
model.roi_heads.mask_head.conv_dims = [C, C, C, C]
model.roi_heads.num_classes = 3
model.roi_heads.batch_size_per_image = 128
model.proposal_generator.post_nms_topk = (500, 200)

train.init_checkpoint = ""
train.output_dir = "output/detectron2_shapes"
train.device = "cpu"
train.amp.enabled = False
train.ddp.fp16_compression = False
train.log_period = 20
train.checkpointer.period = 100
optimizer.lr = 2e-4
train.max_iter, lr_multiplier = schedule(100, 300, (266, 288), warmup_iters=30)  # 300 iterations
train.eval_period = train.max_iter

"""Shared parts of the DETA configs (the released DETA_pe recipe, ``apps/detection/DETA_pe`` of perception_models):
DETA (two-stage Deformable-DETR with box refinement, IoU assignment, NMS 0.7) over the PE tower with the released
``PEv1_simpleFPN`` levels (p3 transposed conv, p4, p5 max pool; 5 levels into the transformer), 900 queries, the
transformer of 6 + 6 layers (d 256, FFN 2048, no dropout), ImageNet mean/std, the released multi-scale augmentation
padded to a square (``pe_dense.detectron2.deta.recipe``), AdamW lr 5e-5 with the backbone at ``lr_backbone``, the
sampling offsets at 0.1 lr, weight decay 1e-4, gradients clipped to 0.1, StepLR. Size-specific files set the
backbone, the image size and the schedule."""
from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from detectron2.solver import get_default_optimizer_params

from pe_dense.detectron2.deta import DETA, PEDETABackbone, dataset_class_ids
from pe_dense.detectron2.deta.recipe import (
    clipped_adamw,
    lr_factors,
    step_schedule,
    test_augmentations,
    train_augmentations,
)
from pe_dense.detectron2.deta.tta import released_tta

image_size = 1024
dataloader = model_zoo.get_config("common/data/coco.py").dataloader
dataloader.train.mapper.augmentations = train_augmentations(image_size)
dataloader.train.mapper.image_format = "RGB"
dataloader.train.mapper.use_instance_mask = False
dataloader.train.total_batch_size = 64
dataloader.test.mapper.augmentations = test_augmentations(image_size)
dataloader.test.mapper.image_format = "RGB"

model = L(DETA)(
    backbone=L(PEDETABackbone)(
        model_name="PE-Spatial-B16-512",
        vit=dict(
            patch_size=16,          # patch-14 towers converted to 16 at load time (bicubic), as released
            window_size=16,
            global_blocks=[2, 5, 8, 11],
            pos_embed="tile",
            rope="interpolate",
            rope_grid=16,           # the released DETA_pe's pt_hw_seq_len=16 (its comment: "Maybe a bug ?")
            drop_path_rate=0.1,
            act_checkpoint=False,
        ),
        square_pad=image_size,
    ),
    num_classes=80,
    num_queries=900,
    hidden_dim=256,
    nheads=8,
    enc_layers=6,
    dec_layers=6,
    dim_feedforward=2048,
    dropout=0.0,
    num_feature_levels=5,
    criterion=dict(class_weight=1.0, bbox_weight=5.0, giou_weight=2.0, focal_alpha=0.25),
    test_topk=100,
    nms_thresh=0.7,
    # released heads score one output per category id: mapped onto the dataset's classes at load time
    class_ids=L(dataset_class_ids)(names="${dataloader.test.dataset.names}"),
)

train = model_zoo.get_config("common/train.py").train
train.amp.enabled = True
train.amp.precision = "bfloat16"  # the released --bf16 runs
train.ddp.fp16_compression = False
train.init_checkpoint = "${model.backbone.model_name}"
train.output_dir = "output/deta"

lr, lr_backbone = 5e-5, 5e-5
optimizer = L(clipped_adamw)(
    params=L(get_default_optimizer_params)(
        base_lr="${..lr}",
        weight_decay_norm=None,  # the released code decays every parameter
        lr_factor_func=L(lr_factors)(lr="${...lr}", lr_backbone=lr_backbone),
    ),
    lr=lr,
    weight_decay=1e-4,
    max_norm=0.1,
)
train.max_iter, lr_multiplier = step_schedule(12, 10, 118287, 64)  # COCO, 12 epochs, x0.1 after 10
tta = released_tta(image_size)  # --eval-only --tta: the released DETA TTA (sizes, flip, soft-NMS, 2000 queries)

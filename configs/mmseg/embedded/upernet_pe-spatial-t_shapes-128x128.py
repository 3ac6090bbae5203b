# The embedded segmentation default: PE-Spatial-T + a light UPerNet on generated shapes (ADE20K layout), CPU-sized.
# Random initialization (no weights can be downloaded on these machines); pass
# --cfg-options model.backbone.pretrained=/path/PE-Spatial-T16-512.pt to start from PE weights.
_base_ = ["../_base_/models/upernet_pe.py", "../_base_/pe_runtime.py", "../_base_/schedules/adamw_layer_decay.py"]
crop_size = (128, 128)
norm_cfg = dict(type="BN", requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(model_name="PE-Spatial-T16-512", pretrained=None, out_indices=[3, 5, 7, 11], drop_path_rate=0.0),
    neck=dict(in_channels=[192] * 4, out_channels=192),
    decode_head=dict(in_channels=[192] * 4, channels=128, num_classes=4, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=192, channels=64, num_classes=4, norm_cfg=norm_cfg),
    test_cfg=dict(mode="whole"),
)
dataset_type = "PEShapesSegDataset"
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", reduce_zero_label=True),
    dict(type="RandomResize", scale=(128, 128), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type="RandomCrop", crop_size=crop_size, cat_max_ratio=0.9),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PackSegInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", reduce_zero_label=True),
    dict(type="PackSegInputs"),
]
# test-time augmentation (mmseg's tools/test.py --tta, pe-dense predict --tta): three scales x the flip, merged by
# the runtime's tta_model (SegTTAModel)
tta_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="TestTimeAug", transforms=[
        [dict(type="Resize", scale_factor=r, keep_ratio=True) for r in (0.75, 1.0, 1.25)],
        [dict(type="RandomFlip", prob=0.0, direction="horizontal"),
         dict(type="RandomFlip", prob=1.0, direction="horizontal")],
        [dict(type="LoadAnnotations", reduce_zero_label=True)], [dict(type="PackSegInputs")]]),
]
train_dataloader = dict(
    batch_size=4, num_workers=0, sampler=dict(type="InfiniteSampler", shuffle=True),
    dataset=dict(type=dataset_type, generate=True,
                 data_prefix=dict(img_path="images/training", seg_map_path="annotations/training"),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(type=dataset_type, generate=True,
                 data_prefix=dict(img_path="images/validation", seg_map_path="annotations/validation"),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type="IoUMetric", iou_metrics=["mIoU"])
test_evaluator = val_evaluator
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.01), paramwise_cfg=dict(layer_decay_rate=1.0))
param_scheduler = [
    dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=10),
    dict(type="PolyLR", eta_min=0.0, power=1.0, begin=10, end=120, by_epoch=False),
]
train_cfg = dict(max_iters=120, val_interval=120)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=40, max_keep_ckpts=3),
    visualization=dict(type="SegVisualizationHook", draw=True, interval=4),
)
env_cfg = dict(cudnn_benchmark=False)
work_dir = "output/mmseg_shapes"
# seeded: the same figures on every run (random init, data order, augmentations)
randomness = dict(seed=0)

# The embedded depth default: PE-Spatial-T + a light DPT head on generated planes at known depths (NYUv2 layout),
# SiLog loss, the nine DepthMetric figures; CPU-sized, random initialization (see the segmentation default).
_base_ = ["../_base_/models/dpt_pe_depth.py", "../_base_/pe_runtime.py", "../_base_/schedules/adamw_layer_decay.py"]
crop_size = (112, 144)
model = dict(
    data_preprocessor=dict(size=(128, 160)),
    backbone=dict(model_name="PE-Spatial-T16-512", pretrained=None, out_indices=[3, 5, 7, 11], drop_path_rate=0.0),
    decode_head=dict(in_channels=[192] * 4, post_channels=(24, 48, 96, 192), fusion_channels=64, max_depth=10.0),
)
dataset_type = "PENYUPlanesDataset"
meta_keys = ("img_path", "depth_map_path", "ori_shape", "img_shape", "pad_shape", "scale_factor", "flip",
             "flip_direction", "category_id")
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadDepthAnnotation", depth_rescale_factor=1e-3),
    dict(type="RandomFlip", prob=0.5),
    dict(type="RandomCrop", crop_size=crop_size),
    dict(type="PackSegInputs", meta_keys=meta_keys),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadDepthAnnotation", depth_rescale_factor=1e-3),
    dict(type="PackSegInputs", meta_keys=meta_keys),
]
train_dataloader = dict(
    batch_size=4, num_workers=0, sampler=dict(type="InfiniteSampler", shuffle=True),
    dataset=dict(type=dataset_type, generate=True,
                 data_prefix=dict(img_path="images/train", depth_map_path="annotations/train"),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(type=dataset_type, generate=True, test_mode=True,
                 data_prefix=dict(img_path="images/test", depth_map_path="annotations/test"),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type="PEDepthMetric", min_depth_eval=1e-3, max_depth_eval=10.0)
test_evaluator = val_evaluator
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.01), paramwise_cfg=dict(layer_decay_rate=1.0))
param_scheduler = [
    dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=10),
    dict(type="PolyLR", eta_min=0.0, power=1.0, begin=10, end=200, by_epoch=False),
]
train_cfg = dict(max_iters=200, val_interval=200)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=50, max_keep_ckpts=3, save_best="rmse", rule="less"),
    visualization=dict(type="SegVisualizationHook", draw=True, interval=4),
)
env_cfg = dict(cudnn_benchmark=False)
work_dir = "output/mmseg_nyu_planes"
# seeded: the same figures on every run (random init, data order, augmentations)
randomness = dict(seed=0)

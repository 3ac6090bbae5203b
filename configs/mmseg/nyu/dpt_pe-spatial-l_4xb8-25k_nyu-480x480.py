# PE-Spatial-L14-448 + DPT on NYUv2 depth (0.001-10 m, nyu_crop), SiLog loss, crop 480, 25k iterations
_base_ = ["../_base_/models/dpt_pe_depth.py", "mmseg::_base_/datasets/nyu.py", "../_base_/pe_runtime.py",
          "../_base_/schedules/adamw_layer_decay.py"]
crop_size = (480, 480)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(model_name="PE-Spatial-L14-448", pretrained="facebook/PE-Spatial-L14-448", out_indices=[7,11,15,23], drop_path_rate=0.2),
    decode_head=dict(in_channels=[1024] * 4, max_depth=10.0),
)
val_evaluator = dict(type="PEDepthMetric", min_depth_eval=1e-3, max_depth_eval=10.0, crop_type="nyu_crop")
test_evaluator = val_evaluator
optim_wrapper = dict(optimizer=dict(lr=5e-5), paramwise_cfg=dict(layer_decay_rate=0.75))
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-6, by_epoch=False, begin=0, end=500),
    dict(type="PolyLR", eta_min=0.0, power=1.0, begin=500, end=25000, by_epoch=False),
]
train_cfg = dict(max_iters=25000, val_interval=2500)
default_hooks = dict(checkpoint=dict(interval=2500, save_best="rmse", rule="less"))

# PE-Spatial-S16-512 frozen, linear probe (BN + 1x1 conv) on the last block, ADE20K crop 512, 40k iterations (DINOv2 protocol)
_base_ = ["../_base_/models/linear_pe.py", "mmseg::_base_/datasets/ade20k.py", "../_base_/pe_runtime.py",
          "../_base_/schedules/adamw_layer_decay.py"]
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(model_name="PE-Spatial-S16-512", pretrained="facebook/PE-Spatial-S16-512"),
    decode_head=dict(in_channels=[384]),
)
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=1e-4), paramwise_cfg=dict(layer_decay_rate=1.0))
param_scheduler = [dict(type="PolyLR", eta_min=0.0, power=1.0, begin=0, end=40000, by_epoch=False)]
train_cfg = dict(max_iters=40000, val_interval=4000)
default_hooks = dict(checkpoint=dict(interval=4000))
train_dataloader = dict(batch_size=2)

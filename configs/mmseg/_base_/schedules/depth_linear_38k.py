# DINOv2's linear depth schedule (its released NYU/KITTI linear configs): 38400 iterations, AdamW lr 1e-4, betas
# 0.9/0.999, wd 0.01 (none on norms, position table, class token), gradient clipping at 35, a cosine over the whole
# run (to 1e-8 of the lr) times a linear warm-up from 1e-3 over the first 12800 iterations (mmcv's warm-up scales the
# cosine's value: the two schedulers overlap and multiply). Not reproduced: its OneCycle momentum hook (Adam's beta1
# cycled); betas stay fixed here.
_base_ = ["./adamw_layer_decay.py"]
optim_wrapper = dict(optimizer=dict(lr=1e-4, weight_decay=0.01), paramwise_cfg=dict(layer_decay_rate=1.0),
                     clip_grad=dict(max_norm=35, norm_type=2))
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-3, by_epoch=False, begin=0, end=12800),
    dict(type="CosineAnnealingLR", T_max=38400, eta_min_ratio=1e-8, by_epoch=False, begin=0, end=38400),
]
train_cfg = dict(max_iters=38400, val_interval=3200)
default_hooks = dict(checkpoint=dict(interval=3200, save_best="rmse", rule="less"))

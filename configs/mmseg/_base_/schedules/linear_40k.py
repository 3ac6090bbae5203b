# Linear probe on a frozen backbone (DINOv2's protocol): 40k iterations, AdamW lr 1e-3, wd 1e-4, linear warm-up of
# 1500 iterations (from 1e-6) then poly, no layer decay
_base_ = ["./adamw_layer_decay.py"]
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=1e-4), paramwise_cfg=dict(layer_decay_rate=1.0))
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type="PolyLR", eta_min=0.0, power=1.0, begin=1500, end=40000, by_epoch=False),
]
train_cfg = dict(max_iters=40000, val_interval=4000)
default_hooks = dict(checkpoint=dict(interval=4000))

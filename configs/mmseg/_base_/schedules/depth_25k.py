# Depth fine-tuning: 25k iterations, warm-up 500 + poly, validation every 2.5k, keep the best RMSE
_base_ = ["./adamw_layer_decay.py"]
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-6, by_epoch=False, begin=0, end=500),
    dict(type="PolyLR", eta_min=0.0, power=1.0, begin=500, end=25000, by_epoch=False),
]
train_cfg = dict(max_iters=25000, val_interval=2500)
default_hooks = dict(checkpoint=dict(interval=2500, save_best="rmse", rule="less"))

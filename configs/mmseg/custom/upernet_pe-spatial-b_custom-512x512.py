# PE-Spatial-B16-512 + UPerNet on your own segmentation folders (the ADE20K recipe of this size: crop 512, AdamW,
# layer decay
# 0.65), 20k iterations. See _base_/datasets/folder_seg.py for the layout:
#   python tools/train_mmseg.py configs/mmseg/custom/upernet_pe-spatial-b_custom-512x512.py \
#       --cfg-options data_root=/data/mine classes=classes.txt
# (longer or shorter: train_cfg.max_iters=N param_scheduler.1.end=N)
_base_ = ["../_base_/models/upernet_pe.py", "../_base_/datasets/folder_seg.py", "../_base_/pe_runtime.py",
          "../_base_/schedules/adamw_layer_decay.py"]
model = dict(
    data_preprocessor=dict(size={{_base_.crop_size}}),
    backbone=dict(model_name="PE-Spatial-B16-512", out_indices=[3, 5, 7, 11], drop_path_rate=0.1),
    neck=dict(in_channels=[768] * 4, out_channels=768),
    decode_head=dict(in_channels=[768] * 4),
    auxiliary_head=dict(in_channels=768),
)
optim_wrapper = dict(optimizer=dict(lr=1e-4), paramwise_cfg=dict(layer_decay_rate=0.65))
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type="PolyLR", eta_min=0.0, power=1.0, begin=1500, end=20000, by_epoch=False),
]
train_cfg = dict(max_iters=20000, val_interval=2000)
default_hooks = dict(checkpoint=dict(interval=2000, save_best="mIoU", rule="greater"))

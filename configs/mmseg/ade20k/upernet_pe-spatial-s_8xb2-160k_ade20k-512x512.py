# PE-Spatial-S16-512 + UPerNet on ADE20K, crop 512, 160k iterations, batch 16 (8 GPUs x 2), AdamW with layer decay 0.65
_base_ = ["../_base_/models/upernet_pe.py", "mmseg::_base_/datasets/ade20k.py", "../_base_/pe_runtime.py",
          "../_base_/schedules/adamw_layer_decay.py"]
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(model_name="PE-Spatial-S16-512", out_indices=[3,5,7,11], drop_path_rate=0.05),
    neck=dict(in_channels=[384] * 4, out_channels=384),
    decode_head=dict(in_channels=[384] * 4),
    auxiliary_head=dict(in_channels=384),
)
optim_wrapper = dict(optimizer=dict(lr=1e-4), paramwise_cfg=dict(layer_decay_rate=0.65))
train_dataloader = dict(batch_size=2)

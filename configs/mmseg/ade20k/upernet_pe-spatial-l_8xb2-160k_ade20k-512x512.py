# PE-Spatial-L14-448 + UPerNet on ADE20K, crop 512, 160k iterations, batch 16 (8 GPUs x 2), AdamW with layer decay 0.75
_base_ = ["./upernet_pe-spatial-b_8xb2-160k_ade20k-512x512.py"]
model = dict(backbone=dict(model_name="PE-Spatial-L14-448", out_indices=[7, 11, 15, 23], drop_path_rate=0.2),
             neck=dict(in_channels=[1024] * 4, out_channels=1024), decode_head=dict(in_channels=[1024] * 4),
             auxiliary_head=dict(in_channels=1024))
optim_wrapper = dict(optimizer=dict(lr=5e-5), paramwise_cfg=dict(layer_decay_rate=0.75))

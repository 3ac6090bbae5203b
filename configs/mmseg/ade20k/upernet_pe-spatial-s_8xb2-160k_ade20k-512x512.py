# PE-Spatial-S16-512 + UPerNet on ADE20K, crop 512, 160k iterations, batch 16 (8 GPUs x 2), AdamW with layer decay 0.65
_base_ = ["./upernet_pe-spatial-b_8xb2-160k_ade20k-512x512.py"]
model = dict(backbone=dict(model_name="PE-Spatial-S16-512", drop_path_rate=0.05),
             neck=dict(in_channels=[384] * 4, out_channels=384), decode_head=dict(in_channels=[384] * 4),
             auxiliary_head=dict(in_channels=384))

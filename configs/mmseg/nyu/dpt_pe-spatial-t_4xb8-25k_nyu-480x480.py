# PE-Spatial-T16-512 + DPT on NYUv2 depth (0.001-10 m, nyu_crop), SiLog loss, crop 480, 25k iterations
_base_ = ["./dpt_pe-spatial-b_4xb8-25k_nyu-480x480.py"]
model = dict(backbone=dict(model_name="PE-Spatial-T16-512", drop_path_rate=0.0),
             decode_head=dict(in_channels=[192] * 4))

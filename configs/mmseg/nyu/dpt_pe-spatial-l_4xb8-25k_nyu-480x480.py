# PE-Spatial-L14-448 + DPT on NYUv2 depth (0.001-10 m, nyu_crop), SiLog loss, crop 480, 25k iterations
_base_ = ["./dpt_pe-spatial-b_4xb8-25k_nyu-480x480.py"]
model = dict(backbone=dict(model_name="PE-Spatial-L14-448", out_indices=[7, 11, 15, 23], drop_path_rate=0.2),
             decode_head=dict(in_channels=[1024] * 4))
optim_wrapper = dict(optimizer=dict(lr=5e-5), paramwise_cfg=dict(layer_decay_rate=0.75))

# PE-Spatial-G14-448 + DPT on NYUv2 depth (0.001-10 m, nyu_crop), SiLog loss, crop 480, 25k iterations
_base_ = ["./dpt_pe-spatial-b_4xb8-25k_nyu-480x480.py"]
model = dict(backbone=dict(model_name="PE-Spatial-G14-448", out_indices=[12, 24, 36, 49], drop_path_rate=0.3,
                           act_checkpoint=True),
             decode_head=dict(in_channels=[1536] * 4))
optim_wrapper = dict(optimizer=dict(lr=3e-5), paramwise_cfg=dict(layer_decay_rate=0.9))

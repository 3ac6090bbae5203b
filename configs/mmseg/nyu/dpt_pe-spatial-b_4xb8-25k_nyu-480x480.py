# PE-Spatial-B16-512 + DPT on NYUv2 depth (0.001-10 m, nyu_crop), SiLog loss, crop 480, 25k iterations
_base_ = ["../_base_/models/dpt_pe_depth.py", "../_base_/datasets/nyu_pe.py", "../_base_/pe_runtime.py",
          "../_base_/schedules/depth_25k.py"]
crop_size = (480, 480)
model = dict(
    data_preprocessor=dict(size=crop_size),
    # evaluated with flip over sliding 480 crops, as mmseg's own NYU depth configs (slide_flip, stride 160)
    test_cfg=dict(mode="slide_flip", crop_size=crop_size, stride=(160, 160), blend="ramp"),
    backbone=dict(model_name="PE-Spatial-B16-512", out_indices=[3,5,7,11], drop_path_rate=0.1),
    decode_head=dict(in_channels=[768] * 4, max_depth=10.0),
)
optim_wrapper = dict(optimizer=dict(lr=1e-4), paramwise_cfg=dict(layer_decay_rate=0.65))

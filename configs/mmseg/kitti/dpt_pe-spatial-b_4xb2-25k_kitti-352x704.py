# PE-Spatial-B16-512 + DPT on KITTI (Eigen split; 0.001-80 m, Garg crop), SiLog loss, crop 352x704, 25k iterations
_base_ = ["../_base_/models/dpt_pe_depth.py", "../_base_/datasets/kitti.py", "../_base_/pe_runtime.py",
          "../_base_/schedules/depth_25k.py"]
crop_size = (352, 704)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(model_name="PE-Spatial-B16-512", out_indices=[3,5,7,11]),
    decode_head=dict(in_channels=[768] * 4, max_depth=80.0),
)
optim_wrapper = dict(optimizer=dict(lr=1e-4), paramwise_cfg=dict(layer_decay_rate=0.65))

# PE-Spatial-L14-448 frozen + DINOv2's linear depth probe (lin. 4: blocks 6, 12, 18, 24 of 24, class token
# concatenated), NYUv2 0.001-10 m, nyu_crop, 38.4k iterations
_base_ = ["../_base_/models/linear_bins_pe_depth.py", "../_base_/datasets/nyu_pe.py", "../_base_/pe_runtime.py",
          "../_base_/schedules/depth_linear_38k.py"]
crop_size = (480, 480)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(model_name="PE-Spatial-L14-448", out_indices=[5, 11, 17, 23]),
    decode_head=dict(in_channels=[1024] * 4),
)
train_dataloader = dict(batch_size=2)

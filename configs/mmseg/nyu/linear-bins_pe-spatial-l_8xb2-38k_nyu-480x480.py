# PE-Spatial-L14-448 frozen + DINOv2's linear depth probe (lin. 4: blocks 6, 12, 18, 24 of 24, class token
# concatenated), NYUv2 0.001-10 m, nyu_crop, 38.4k iterations
_base_ = ["./linear-bins_pe-spatial-b_8xb2-38k_nyu-480x480.py"]
model = dict(backbone=dict(model_name="PE-Spatial-L14-448", out_indices=[5, 11, 17, 23]),
             decode_head=dict(in_channels=[1024] * 4))

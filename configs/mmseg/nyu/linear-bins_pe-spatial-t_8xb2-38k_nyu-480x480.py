# PE-Spatial-T16-512 frozen + DINOv2's linear depth probe (lin. 4: blocks 3, 6, 9, 12 of 12, class token
# concatenated), NYUv2 0.001-10 m, nyu_crop, 38.4k iterations
_base_ = ["./linear-bins_pe-spatial-b_8xb2-38k_nyu-480x480.py"]
model = dict(backbone=dict(model_name="PE-Spatial-T16-512", out_indices=[2, 5, 8, 11]),
             decode_head=dict(in_channels=[192] * 4))

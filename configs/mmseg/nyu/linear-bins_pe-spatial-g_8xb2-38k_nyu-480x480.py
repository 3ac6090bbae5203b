# PE-Spatial-G14-448 frozen + DINOv2's linear depth probe (lin. 4: blocks 13, 25, 38, 50 of 50; the tower has no class
# token), NYUv2 0.001-10 m, nyu_crop, 38.4k iterations
_base_ = ["./linear-bins_pe-spatial-b_8xb2-38k_nyu-480x480.py"]
model = dict(backbone=dict(model_name="PE-Spatial-G14-448", out_indices=[12, 24, 37, 49], return_class_token=False),
             decode_head=dict(in_channels=[1536] * 4, class_token=False))

# PE-Core-G frozen, linear probe on block 41 of 50 (index 40: where PE-Spatial-G was distilled from; the best
# dense features of PE-Core are not at its output), ADE20K crop 512, 40k iterations
_base_ = ["./linear_pe-spatial-g_8xb2-40k_ade20k-512x512.py"]
model = dict(backbone=dict(model_name="PE-Core-G14-448", out_indices=[40]))

# PE-Spatial-S16-512 frozen, linear probe (BN + 1x1 conv) on the last block, ADE20K crop 512, 40k iterations (DINOv2
# protocol)
_base_ = ["./linear_pe-spatial-b_8xb2-40k_ade20k-512x512.py"]
model = dict(backbone=dict(model_name="PE-Spatial-S16-512"), decode_head=dict(in_channels=[384]))

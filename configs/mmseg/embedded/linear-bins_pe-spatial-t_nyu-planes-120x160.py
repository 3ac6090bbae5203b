# The embedded depth default with DINOv2's linear depth probe instead of DPT (the head of the frozen
# configs/mmseg/nyu/linear-bins_* recipes: four taps with the class token concatenated, x4, 1x1 conv to 256 bins over
# 0.001-10 m, "linear" bin normalization; SigLoss + 0.5 x gradient loss). Unlike those, the tower trains here (random
# initialization: frozen random features carry no depth) and the SigLoss warm-up is off (200 iterations in all).
_base_ = ["./dpt_pe-spatial-t_nyu-planes-120x160.py"]
model = dict(
    backbone=dict(return_class_token=True),
    decode_head=dict(_delete_=True, type="PELinearBinsHead", in_channels=[192] * 4, class_token=True, n_bins=256,
                     norm="linear", bn=False, min_depth=1e-3, max_depth=10.0, upsample=4, align_corners=False,
                     loss_decode=[dict(type="PESigLoss", loss_weight=1.0, warm_up_iters=0, loss_name="loss_depth"),
                                  dict(type="PEGradientLoss", loss_weight=0.5, loss_name="loss_grad")]),
)
work_dir = "output/mmseg_nyu_planes_linear_bins"
# seeded: the same figures on every run (random init, data order, augmentations)
randomness = dict(seed=0)

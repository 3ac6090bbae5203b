# The embedded depth default with DINOv2's linear depth probe instead of DPT: BN + 1x1 conv to 256 bins over
# 0.001-10 m on the four taps concatenated, expectation over the bins; SiLog loss, the nine DepthMetric figures.
_base_ = ["./dpt_pe-spatial-t_nyu-planes-120x160.py"]
model = dict(
    decode_head=dict(_delete_=True, type="PELinearBinsHead", in_channels=[192] * 4, n_bins=256, min_depth=1e-3,
                     max_depth=10.0, upsample=4, align_corners=False, loss_decode=dict(type="SiLogLoss")),
)
work_dir = "output/mmseg_nyu_planes_linear_bins"

# Monocular depth: DepthEstimator, DPT head on four PE taps, SiLog loss
data_preprocessor = dict(type="SegDataPreProcessor", mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5],
                         bgr_to_rgb=True, pad_val=0, seg_pad_val=0)
model = dict(
    type="PEDepthEstimator",
    data_preprocessor=data_preprocessor,
    backbone=dict(type="PETower", model_name="PE-Spatial-B16-512", pretrained=True,
                  out_indices=[3, 5, 7, 11], drop_path_rate=0.1),
    decode_head=dict(type="PEDPTHead", in_channels=[768] * 4, post_channels=(96, 192, 384, 768),
                     fusion_channels=256, min_depth=1e-3, max_depth=10.0, align_corners=False,
                     loss_decode=dict(type="SiLogLoss")),
    train_cfg=dict(),
    test_cfg=dict(mode="whole"),
)

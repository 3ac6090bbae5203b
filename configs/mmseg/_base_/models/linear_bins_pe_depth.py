# The frozen-feature depth probe of DINOv2 ("lin. 4"), which PE's dense evaluation follows: a frozen tower, four taps
# at the quarter points of its depth, each with the class token concatenated to every patch (towers that have one),
# upsampled x4, one 1x1 conv to 256 bins spaced linearly over 0.001-10 m, AdaBins' "linear" normalization (relu +
# 0.1, divided by the sum), depth = expectation over the bins; no normalization layer (DINOv2's released BNHead has
# its BatchNorm commented out). Loss: SigLoss with 100 warm-up iterations + 0.5 x gradient loss.
data_preprocessor = dict(type="SegDataPreProcessor", mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5],
                         bgr_to_rgb=True, pad_val=0, seg_pad_val=0)
model = dict(
    type="PEDepthEstimator",
    data_preprocessor=data_preprocessor,
    backbone=dict(type="PETower", model_name="PE-Spatial-B16-512", pretrained=True,
                  out_indices=[2, 5, 8, 11], frozen_blocks=-1, return_class_token=True),
    decode_head=dict(type="PELinearBinsHead", in_channels=[768] * 4, class_token=True, n_bins=256, norm="linear",
                     bn=False, upsample=4, min_depth=1e-3, max_depth=10.0, align_corners=False,
                     loss_decode=[dict(type="PESigLoss", loss_weight=1.0, warm_up_iters=100, loss_name="loss_depth"),
                                  dict(type="PEGradientLoss", loss_weight=0.5, loss_name="loss_grad")]),
    train_cfg=dict(),
    # NYUv2 test images are 480x640 after the test Resize: one 480x640 window = the whole image, with flip (DINOv2's
    # test-time flip); larger images slide
    test_cfg=dict(mode="slide_flip", crop_size=(480, 640), stride=(320, 426), blend="ramp"),
)

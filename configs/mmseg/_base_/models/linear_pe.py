# The paper's ADE20K protocol: frozen backbone, linear probe (BN + 1x1 conv) on one tap
data_preprocessor = dict(type="SegDataPreProcessor", mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5],
                         bgr_to_rgb=True, pad_val=0, seg_pad_val=255)
model = dict(
    type="PEEncoderDecoder",
    data_preprocessor=data_preprocessor,
    backbone=dict(type="PETower", model_name="PE-Spatial-B16-512", pretrained=True,
                  out_indices=[-1], frozen_blocks=-1),
    decode_head=dict(type="PELinearHead", in_channels=[768], in_index=[0], num_classes=150, dropout_ratio=0.0,
                     align_corners=False,
                     loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode="slide", crop_size=(512, 512), stride=(341, 341), blend="ramp"),
)
# the head's BatchNorm becomes SyncBN when training on several GPUs (mmengine converts it; single-process runs and
# CPU DDP keep BatchNorm), as DINOv2's linear head normalizes over the whole batch
sync_bn = "torch"

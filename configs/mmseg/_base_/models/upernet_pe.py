# UPerNet on four PE taps (mmseg's ViT recipe: MultiLevelNeck to strides 4/8/16/32, UPerHead, FCN auxiliary 0.4)
norm_cfg = dict(type="SyncBN", requires_grad=True)
data_preprocessor = dict(type="SegDataPreProcessor", mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5],
                         bgr_to_rgb=True, pad_val=0, seg_pad_val=255)
model = dict(
    type="PEEncoderDecoder",
    data_preprocessor=data_preprocessor,
    backbone=dict(type="PETower", model_name="PE-Spatial-B16-512", pretrained=True,
                  out_indices=[3, 5, 7, 11], drop_path_rate=0.1),
    neck=dict(type="MultiLevelNeck", in_channels=[768] * 4, out_channels=768, scales=[4, 2, 1, 0.5]),
    decode_head=dict(type="UPerHead", in_channels=[768] * 4, in_index=[0, 1, 2, 3], pool_scales=(1, 2, 3, 6),
                     channels=512, dropout_ratio=0.1, num_classes=150, norm_cfg=norm_cfg, align_corners=False,
                     loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(type="FCNHead", in_channels=768, in_index=3, channels=256, num_convs=1, concat_input=False,
                        dropout_ratio=0.1, num_classes=150, norm_cfg=norm_cfg, align_corners=False,
                        loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=0.4)),
    train_cfg=dict(),
    test_cfg=dict(mode="slide", crop_size=(512, 512), stride=(341, 341), blend="ramp"),
)

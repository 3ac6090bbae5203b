# PE-Spatial-B16-512 frozen, linear probe (BN + 1x1 conv) on the last block, ADE20K crop 512, 40k iterations (DINOv2
# protocol)
_base_ = ["../_base_/models/linear_pe.py", "mmseg::_base_/datasets/ade20k.py", "../_base_/pe_runtime.py",
          "../_base_/schedules/linear_40k.py"]
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(model_name="PE-Spatial-B16-512"),
    decode_head=dict(in_channels=[768]),
)
train_dataloader = dict(batch_size=2)

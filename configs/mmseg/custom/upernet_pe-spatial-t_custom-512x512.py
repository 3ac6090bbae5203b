# PE-Spatial-T16-512 + UPerNet on your own segmentation folders: the B file's recipe with the T tower (see
# upernet_pe-spatial-b_custom-512x512.py and _base_/datasets/folder_seg.py):
#   python tools/train_mmseg.py configs/mmseg/custom/upernet_pe-spatial-t_custom-512x512.py \
#       --cfg-options data_root=/data/mine classes=classes.txt
_base_ = ["./upernet_pe-spatial-b_custom-512x512.py"]
model = dict(
    backbone=dict(model_name="PE-Spatial-T16-512", drop_path_rate=0.0),
    neck=dict(in_channels=[192] * 4, out_channels=192),
    decode_head=dict(in_channels=[192] * 4),
    auxiliary_head=dict(in_channels=192),
)

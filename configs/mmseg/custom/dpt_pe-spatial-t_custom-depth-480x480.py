# PE-Spatial-T16-512 + DPT on your own depth folders: the B file's recipe with the T tower (see
# dpt_pe-spatial-b_custom-depth-480x480.py and _base_/datasets/folder_depth.py):
#   python tools/train_mmseg.py configs/mmseg/custom/dpt_pe-spatial-t_custom-depth-480x480.py \
#       --cfg-options data_root=/data/mine depth_scale=1000 max_depth=10
_base_ = ["./dpt_pe-spatial-b_custom-depth-480x480.py"]
model = dict(
    backbone=dict(model_name="PE-Spatial-T16-512", drop_path_rate=0.0),
    decode_head=dict(in_channels=[192] * 4),
)

# PE-Spatial-B16-512 + DPT on your own depth folders (the NYUv2 recipe of this size: crop 480, SiLog loss, 25k
# iterations).
# See _base_/datasets/folder_depth.py for the layout:
#   python tools/train_mmseg.py configs/mmseg/custom/dpt_pe-spatial-b_custom-depth-480x480.py \
#       --cfg-options data_root=/data/mine depth_scale=1000 max_depth=10
_base_ = ["../_base_/models/dpt_pe_depth.py", "../_base_/datasets/folder_depth.py", "../_base_/pe_runtime.py",
          "../_base_/schedules/depth_25k.py"]
model = dict(
    data_preprocessor=dict(size={{_base_.crop_size}}),
    backbone=dict(model_name="PE-Spatial-B16-512", out_indices=[3, 5, 7, 11], drop_path_rate=0.1),
    decode_head=dict(in_channels=[768] * 4, max_depth={{_base_.max_depth}}),
)
optim_wrapper = dict(optimizer=dict(lr=1e-4), paramwise_cfg=dict(layer_decay_rate=0.65))

# PE-Spatial-L14-448 + DPT on KITTI (Eigen split; 0.001-80 m, Garg crop), SiLog loss, crop 352x704, 25k iterations
_base_ = ["../_base_/models/dpt_pe_depth.py", "../_base_/datasets/kitti.py", "../_base_/pe_runtime.py",
          "../_base_/schedules/depth_25k.py"]
crop_size = (352, 704)
# Drop path 0.2 as the NYU and ADE20K L twins: the same tower fine-tuned on a depth set of similar size (KITTI Eigen
# train: ~23k frames, NYU: ~24k); the regulariser belongs to the tower size, not to the dataset.
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(model_name="PE-Spatial-L14-448", out_indices=[7,11,15,23], drop_path_rate=0.2),
    decode_head=dict(in_channels=[1024] * 4, max_depth=80.0),
)
optim_wrapper = dict(optimizer=dict(lr=5e-5), paramwise_cfg=dict(layer_decay_rate=0.75))

# PE-Spatial-L14-448 + DPT on KITTI (Eigen split; 0.001-80 m, Garg crop), SiLog loss, crop 352x704, 25k iterations
_base_ = ["./dpt_pe-spatial-b_4xb2-25k_kitti-352x704.py"]
# Drop path 0.2 as the NYU and ADE20K L twins: the same tower fine-tuned on a depth set of similar size (KITTI Eigen
# train: ~23k frames, NYU: ~24k); the regulariser belongs to the tower size, not to the dataset.
model = dict(backbone=dict(model_name="PE-Spatial-L14-448", out_indices=[7, 11, 15, 23], drop_path_rate=0.2),
             decode_head=dict(in_channels=[1024] * 4))
optim_wrapper = dict(optimizer=dict(lr=5e-5), paramwise_cfg=dict(layer_decay_rate=0.75))

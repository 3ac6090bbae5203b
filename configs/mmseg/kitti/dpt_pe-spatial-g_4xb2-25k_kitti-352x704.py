# PE-Spatial-G14-448 + DPT on KITTI (Eigen split; 0.001-80 m, Garg crop), SiLog loss, crop 352x704, 25k iterations
_base_ = ["./dpt_pe-spatial-b_4xb2-25k_kitti-352x704.py"]
# Drop path 0.3 and activation checkpointing as the NYU and ADE20K G twins: the regulariser belongs to the tower size,
# and a 1.8B tower at 352x704 with batch 2 per GPU needs checkpointing to fit 80 GB cards, as at 480x480.
model = dict(backbone=dict(model_name="PE-Spatial-G14-448", out_indices=[12, 24, 36, 49], drop_path_rate=0.3,
                           act_checkpoint=True),
             decode_head=dict(in_channels=[1536] * 4))
optim_wrapper = dict(optimizer=dict(lr=3e-5), paramwise_cfg=dict(layer_decay_rate=0.9))

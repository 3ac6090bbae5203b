# Your own depth folders (PEFolderDepthDataset): data_root/images/{train,val}/*, data_root/depth/{train,val}/NAME.png
# (16-bit, depth_scale values per metre: 1000 = millimetres) or NAME.npy (depth_scale=1 for metres); 0 = no depth.
# Set on the command line of tools/train_mmseg.py, which passes each of these top-level keys to every dataset that
# takes it and gives the head and the metric the depth range:
#   --cfg-options data_root=/data/mine depth_scale=1000 max_depth=10
data_root = "data/my_depth"
depth_scale = 1000.0
max_depth = 10.0
crop_size = (480, 480)
meta_keys = ("img_path", "depth_map_path", "ori_shape", "img_shape", "pad_shape", "scale_factor", "flip",
             "flip_direction")
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="PELoadDepthAnnotation"),
    dict(type="RandomFlip", prob=0.5),
    dict(type="RandomCrop", crop_size=crop_size),
    dict(type="PackSegInputs", meta_keys=meta_keys),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=(2000, 480), keep_ratio=True),
    dict(type="PELoadDepthAnnotation"),
    dict(type="PackSegInputs", meta_keys=meta_keys),
]
train_dataloader = dict(
    batch_size=8, num_workers=2, persistent_workers=True, sampler=dict(type="InfiniteSampler", shuffle=True),
    dataset=dict(type="PEFolderDepthDataset", data_root=data_root, depth_scale=depth_scale, max_depth=max_depth,
                 data_prefix=dict(img_path="images/train", depth_map_path="depth/train"), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=True, sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(type="PEFolderDepthDataset", data_root=data_root, depth_scale=depth_scale, max_depth=max_depth,
                 test_mode=True, data_prefix=dict(img_path="images/val", depth_map_path="depth/val"),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type="PEDepthMetric", min_depth_eval=1e-3, max_depth_eval=max_depth)
test_evaluator = val_evaluator

# KITTI Eigen split in mmseg's depth layout: images/{train,test}/*.png, annotations/{train,test}/*.png
# (uint16 depth x 256, the KITTI depth format). Evaluation 0.001-80 m with the Garg crop.
# mmseg's NYUDataset, a generic image + depth-PNG folder reader (category from the name, -1 if none), that also checks
# its depth maps are 16-bit (PEDepthDataset)
dataset_type = "PEDepthDataset"
data_root = "data/kitti"
crop_size = (352, 704)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadDepthAnnotation", depth_rescale_factor=1 / 256),
    dict(type="RandomFlip", prob=0.5),
    dict(type="RandomCrop", crop_size=crop_size),
    dict(type="PhotoMetricDistortion"),
    dict(type="PackSegInputs", meta_keys=("img_path", "depth_map_path", "ori_shape", "img_shape", "pad_shape",
                                          "scale_factor", "flip", "flip_direction", "category_id")),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadDepthAnnotation", depth_rescale_factor=1 / 256),
    dict(type="PackSegInputs", meta_keys=("img_path", "depth_map_path", "ori_shape", "img_shape", "pad_shape",
                                          "scale_factor", "flip", "flip_direction", "category_id")),
]
train_dataloader = dict(batch_size=2, num_workers=4, persistent_workers=True,
                        sampler=dict(type="InfiniteSampler", shuffle=True),
                        dataset=dict(type=dataset_type, data_root=data_root, img_suffix=".png",
                                     data_prefix=dict(img_path="images/train", depth_map_path="annotations/train"),
                                     pipeline=train_pipeline))
val_dataloader = dict(batch_size=1, num_workers=4, persistent_workers=True,
                      sampler=dict(type="DefaultSampler", shuffle=False),
                      dataset=dict(type=dataset_type, data_root=data_root, img_suffix=".png", test_mode=True,
                                   data_prefix=dict(img_path="images/test", depth_map_path="annotations/test"),
                                   pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type="PEDepthMetric", min_depth_eval=1e-3, max_depth_eval=80.0, crop_type="garg_crop")
test_evaluator = val_evaluator

# Your own segmentation folders (PEFolderSegDataset): data_root/images/{train,val}/*, data_root/labels/{train,val}/*.png
# (class index per pixel), data_root/classes.txt (one class per line, line i = value i; or classes=N). Set on the
# command line of tools/train_mmseg.py, which passes each of these top-level keys to every dataset that takes it and
# gives the heads and the metric the classes and the ignore index:
#   --cfg-options data_root=/data/mine classes=classes.txt ignore_index=255
data_root = "data/my_segmentation"
classes = "classes.txt"
ignore_index = 255
crop_size = (512, 512)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations"),
    dict(type="RandomResize", scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type="RandomCrop", crop_size=crop_size, cat_max_ratio=0.75),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PhotoMetricDistortion"),
    dict(type="PackSegInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=(2048, 512), keep_ratio=True),
    dict(type="LoadAnnotations"),
    dict(type="PackSegInputs"),
]
# test-time augmentation (mmseg's tools/test.py --tta, pe-dense predict --tta): the test resize at 0.75 / 1 / 1.25,
# each with and without the flip, merged by the runtime's tta_model (SegTTAModel)
tta_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="TestTimeAug", transforms=[
        [dict(type="Resize", scale=(2048, 512), keep_ratio=True)],
        [dict(type="Resize", scale_factor=r, keep_ratio=True) for r in (0.75, 1.0, 1.25)],
        [dict(type="RandomFlip", prob=0.0, direction="horizontal"),
         dict(type="RandomFlip", prob=1.0, direction="horizontal")],
        [dict(type="LoadAnnotations")], [dict(type="PackSegInputs")]]),
]
train_dataloader = dict(
    batch_size=2, num_workers=2, persistent_workers=True, sampler=dict(type="InfiniteSampler", shuffle=True),
    dataset=dict(type="PEFolderSegDataset", data_root=data_root, classes=classes, ignore_index=ignore_index,
                 data_prefix=dict(img_path="images/train", seg_map_path="labels/train"), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=True, sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(type="PEFolderSegDataset", data_root=data_root, classes=classes, ignore_index=ignore_index,
                 data_prefix=dict(img_path="images/val", seg_map_path="labels/val"), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type="IoUMetric", iou_metrics=["mIoU"], ignore_index=ignore_index)
test_evaluator = val_evaluator

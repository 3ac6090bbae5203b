# mmseg's NYUv2 depth data (0.001-10 m, nyu_crop), evaluated by PEDepthMetric (DepthMetric's nine figures); the
# dataset is mmseg's NYUDataset that also checks its depth maps are 16-bit (PEDepthDataset)
_base_ = ["mmseg::_base_/datasets/nyu.py"]
train_dataloader = dict(dataset=dict(type="PEDepthDataset"))
val_dataloader = dict(dataset=dict(type="PEDepthDataset"))
test_dataloader = val_dataloader
val_evaluator = dict(type="PEDepthMetric", min_depth_eval=1e-3, max_depth_eval=10.0, crop_type="nyu_crop")
test_evaluator = val_evaluator

# mmseg's NYUv2 depth data (0.001-10 m, nyu_crop), evaluated by PEDepthMetric (DepthMetric's nine figures)
_base_ = ["mmseg::_base_/datasets/nyu.py"]
val_evaluator = dict(type="PEDepthMetric", min_depth_eval=1e-3, max_depth_eval=10.0, crop_type="nyu_crop")
test_evaluator = val_evaluator

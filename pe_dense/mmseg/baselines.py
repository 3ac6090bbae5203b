"""What a model that learned nothing scores on a config's validation set, by the config's own metric: the bar that a
trained figure has to clear, printed beside it (``pe-dense demo``) and asserted by the tests on any machine.

- segmentation: every pixel class 0 (the background of the embedded shapes and of ADE-style label maps);
- depth: every pixel the mean depth of the training labels (valid pixels, > 0).
"""
import contextlib
import copy
import io
import logging
from typing import Dict

import numpy as np
import torch


def _labels_only(ds_cfg):
    """The dataset config with a pipeline that loads the labels only (no image decoding, no augmentation)."""
    ds_cfg = copy.deepcopy(ds_cfg)
    ds_cfg["pipeline"] = [t for t in ds_cfg["pipeline"] if "Annotation" in t["type"]]
    return ds_cfg


def mean_training_depth(cfg) -> float:
    from mmseg.registry import DATASETS

    train = DATASETS.build(_labels_only(cfg.train_dataloader.dataset))
    total, count = 0.0, 0
    for i in range(len(train)):
        d = np.asarray(train.prepare_data(i)["gt_depth_map"], np.float64)
        total, count = total + d[d > 0].sum(), count + int((d > 0).sum())
    return total / max(count, 1)


def trivial_baseline(cfg) -> Dict[str, float]:
    """The config's validation metric (``val_evaluator``) of the trivial predictor (module docstring)."""
    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS, METRICS

    init_default_scope("mmseg")
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.ERROR)  # the metric's notes and table: the trained figures' own log has them
    try:
        return _baseline(cfg, DATASETS, METRICS)
    finally:
        logger.setLevel(level)


def _baseline(cfg, DATASETS, METRICS):
    val = DATASETS.build(_labels_only(cfg.val_dataloader.dataset))
    metric = METRICS.build(copy.deepcopy(cfg.val_evaluator))
    metric.dataset_meta = val.metainfo
    mean = None
    for i in range(len(val)):
        r = val.prepare_data(i)
        if "gt_seg_map" in r:
            gt = torch.as_tensor(np.asarray(r["gt_seg_map"], np.int64))[None]
            sample = dict(pred_sem_seg=dict(data=torch.zeros_like(gt)), gt_sem_seg=dict(data=gt))
        else:
            mean = mean_training_depth(cfg) if mean is None else mean
            gt = torch.as_tensor(np.asarray(r["gt_depth_map"], np.float32))[None]
            sample = dict(pred_depth_map=dict(data=torch.full_like(gt, mean)), gt_depth_map=dict(data=gt))
        metric.process({}, [sample])
    with contextlib.redirect_stdout(io.StringIO()):
        return {k: round(float(v), 4) for k, v in metric.compute_metrics(metric.results).items()}

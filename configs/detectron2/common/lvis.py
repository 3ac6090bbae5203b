"""LVIS v1 with LSJ at 1024 and ViTDet's LVIS settings (repeat-factor sampling, federated loss, 300 detections)."""
from detectron2.config import LazyCall as L
from detectron2.data.detection_utils import get_fed_loss_cls_weights
from detectron2.data.samplers import RepeatFactorTrainingSampler
from detectron2.evaluation.lvis_evaluation import LVISEvaluator

from pe_dense.detectron2.schedules import ITERS_100EP_LVIS, MILESTONES_100EP_LVIS  # noqa: F401

from .coco_loader_lsj import dataloader

# ViTDet's LVIS schedule (derived recipes): pe_dense.detectron2.schedules.ITERS_100EP_LVIS / MILESTONES_100EP_LVIS.
# The released PE-G LVIS recipes keep the COCO numbers (schedule(75)), see LVIS/*_g_75ep.py.

dataloader.train.dataset.names = "lvis_v1_train"
dataloader.train.sampler = L(RepeatFactorTrainingSampler)(
    repeat_factors=L(RepeatFactorTrainingSampler.repeat_factors_from_category_frequency)(
        dataset_dicts="${dataloader.train.dataset}", repeat_thresh=0.001))
dataloader.test.dataset.names = "lvis_v1_val"
dataloader.evaluator = L(LVISEvaluator)(dataset_name="${..test.dataset.names}", max_dets_per_image=300,
                                       output_dir="${train.output_dir}")


def to_lvis(model):
    model.roi_heads.num_classes = 1203
    predictors = model.roi_heads.get("box_predictors") or [model.roi_heads.box_predictor]
    for p in predictors:
        p.test_score_thresh = 0.02
        p.test_topk_per_image = 300
        p.use_sigmoid_ce = True
        p.use_fed_loss = True
        p.get_fed_loss_cls_weights = lambda: get_fed_loss_cls_weights(dataloader.train.dataset.names, 0.5)
    return model

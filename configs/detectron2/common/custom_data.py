"""Your own COCO-format data for any PE detection config: the ``dataset.*`` keys, set on the command line.

  python tools/train_net.py --config-file configs/detectron2/custom/mask_rcnn_pe_spatial_b_custom.py \
      dataset.train_json=train.json dataset.train_images=DIR dataset.val_json=val.json dataset.val_images=DIR \
      train.max_iter=5000 dataloader.train.total_batch_size=16

The datasets are checked (images on disk, categories, boxes, polygons) and registered as ``pe_custom_train`` /
``pe_custom_val`` when the config is instantiated; the number of classes and their names come from the train
file, the mask format from its annotations (polygons; RLE -> bitmasks; no masks at all -> a boxes-only model).
The step schedule (ViTDet's lr steps at 88.9% and 96.3%, 250 warm-up iterations, at most a tenth of the run)
follows ``train.max_iter``, as does the evaluation at the end (``train.eval_period``).

DETA configs (``custom/deta_*``) use ``use_custom_data_deta``: boxes only (masks in the file are not read), the
classes from the train file with new class heads, the released StepLR (x0.1 after 10/12 of the run, no warm-up).
"""
from detectron2.config import LazyCall as L
from detectron2.evaluation import COCOEvaluator
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler

from pe_dense.detectron2.custom import (
    TRAIN,
    VAL,
    custom_dataset,
    has_masks,
    mask_format,
    mask_in_features,
    num_classes,
    register_custom,
)
from pe_dense.detectron2.deta.recipe import step_milestones
from pe_dense.detectron2.schedules import LR_STEPS, iter_milestones, warmup_fraction

dataset = dict(train_json="", train_images="", val_json="", val_images="")


def _use_custom_sets(dataloader, train, output_dir: str):
    """The part every custom config shares: the train / val loaders' datasets and the evaluator on the ``dataset.*``
    keys, the tower's released weights as the start, the run's length and its evaluation at the end."""
    train_args = dict(json_file="${dataset.train_json}", image_root="${dataset.train_images}")
    val_args = dict(json_file="${dataset.val_json}", image_root="${dataset.val_images}", split="val",
                    train_json="${dataset.train_json}")
    dataloader.train.dataset = L(custom_dataset)(names=TRAIN, **train_args)
    dataloader.test.dataset = L(custom_dataset)(names=VAL, filter_empty=False, **val_args)
    dataloader.evaluator = L(COCOEvaluator)(dataset_name=L(register_custom)(name=VAL, **val_args),
                                            output_dir="${train.output_dir}")
    train.init_checkpoint = "${model.backbone.model_name}"
    train.max_iter = 5000  # set it for your data: about epochs x images / dataloader.train.total_batch_size
    train.eval_period = "${train.max_iter}"
    train.output_dir = output_dir


def use_custom_data(dataloader, model, train):
    """Points a PE Mask R-CNN config's loaders, evaluator, heads and schedule at the ``dataset.*`` keys; returns
    its ``lr_multiplier``."""
    _use_custom_sets(dataloader, train, "output/custom")
    dataloader.train.mapper.use_instance_mask = L(has_masks)(json_file="${dataset.train_json}")
    dataloader.train.mapper.recompute_boxes = L(has_masks)(json_file="${dataset.train_json}")  # from cropped masks
    dataloader.train.mapper.instance_mask_format = L(mask_format)(json_file="${dataset.train_json}")
    model.roi_heads.num_classes = L(num_classes)(json_file="${dataset.train_json}")
    model.roi_heads.mask_in_features = L(mask_in_features)(json_file="${dataset.train_json}")
    return L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(
            values=list(LR_STEPS),
            milestones=L(iter_milestones)(max_iter="${train.max_iter}"),
            num_updates="${train.max_iter}",
        ),
        warmup_length=L(warmup_fraction)(max_iter="${train.max_iter}"),
        warmup_factor=0.001,
    )


def use_custom_data_deta(dataloader, model, train):
    """Points a PE DETA config's loaders, evaluator, classes and schedule at the ``dataset.*`` keys (boxes only);
    returns its ``lr_multiplier`` (the released StepLR: x0.1 after 10/12 of ``train.max_iter``)."""
    _use_custom_sets(dataloader, train, "output/custom_deta")
    dataloader.train.mapper.use_instance_mask = False
    model.num_classes = L(num_classes)(json_file="${dataset.train_json}")
    model.class_ids = None  # new class heads, one per class of the train file
    return L(MultiStepParamScheduler)(
        values=[1.0, 0.1],
        milestones=L(step_milestones)(max_iter="${train.max_iter}"),
        num_updates="${train.max_iter}",
    )

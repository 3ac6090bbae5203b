"""DETA (Ouyang-Zhang et al. 2022) on the PE tower, as the released DETA_pe builds it, in Detectron2: the backbone
(``PEDETABackbone``), the meta-architecture (``DETA``), DETA's assigners, losses and NMS. The framework-free parts
live in ``pe_dense.modeling`` (``deformable``, ``deta``)."""
from .assigners import Stage1Assigner, Stage2Assigner, topk_per_gt
from .criterion import DETACriterion, batched_soft_nms, nms_postprocess
from .model import (
           DETA,
           IMAGENET_MEAN,
           IMAGENET_STD,
           PEDETABackbone,
           add_deta_config,
           build_pe_deta_backbone,
           dataset_class_ids,
)

__all__ = ["DETA", "PEDETABackbone", "add_deta_config", "build_pe_deta_backbone",
           "DETACriterion", "IMAGENET_MEAN", "IMAGENET_STD", "Stage1Assigner",
           "Stage2Assigner", "batched_soft_nms", "dataset_class_ids", "nms_postprocess", "topk_per_gt"]

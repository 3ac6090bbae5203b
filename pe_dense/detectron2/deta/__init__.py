"""DETA (Ouyang-Zhang et al. 2022) on the PE tower, as the released DETA_pe builds it, in Detectron2 (issue 32:
in progress). The framework-free parts live in ``pe_dense.modeling`` (``deformable``)."""
from .assigners import Stage1Assigner, Stage2Assigner, topk_per_gt

__all__ = ["Stage1Assigner", "Stage2Assigner", "topk_per_gt"]

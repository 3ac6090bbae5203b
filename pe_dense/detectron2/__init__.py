"""Detectron2 adapter: the PE ViT + simple feature pyramid as a ``detectron2.modeling.Backbone``.

Importing this module imports detectron2 (``import pe_dense`` alone does not).
"""
from .backbone import PEBackbone, add_pe_config, build_pe_backbone
from .data import register_shapes_coco

__all__ = ["PEBackbone", "build_pe_backbone", "add_pe_config", "register_shapes_coco"]

"""Detectron2 adapter: the PE ViT + simple feature pyramid as a ``detectron2.modeling.Backbone``.

Importing this module imports detectron2 (``import pe_dense`` alone does not), and makes Detectron2's
``DetectionCheckpointer`` read files without running code (``train.harden_checkpointer``), in our tools and in
Detectron2's own (``lazyconfig_train_net.py`` imports this through the configs).
"""
from .backbone import PEBackbone, PEViTDetBackbone, add_pe_config, build_pe_backbone
from .data import register_shapes_coco
from .train import harden_checkpointer

harden_checkpointer()

__all__ = ["PEViTDetBackbone", "PEBackbone", "build_pe_backbone", "add_pe_config", "register_shapes_coco"]

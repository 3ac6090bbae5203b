"""pe_dense: Perception Encoder (PE) vision towers as dense-prediction backbones.

``import pe_dense`` imports torch only; the Detectron2 and MMSegmentation adapters live in
``pe_dense.detectron2`` and ``pe_dense.mmseg`` and are imported on demand.
"""
from .checkpoint import CheckpointError, load_checkpoint
from .clip import create_clip, tokenize
from .factory import create_model
from .modeling import PEViT, SimpleFeaturePyramid
from .specs import PIXEL_MEAN, PIXEL_STD, get_spec, list_clip_models, list_models

__version__ = "0.1.0"
__all__ = [
    "create_model", "create_clip", "tokenize", "list_clip_models",
    "load_checkpoint", "list_models", "get_spec", "PEViT", "SimpleFeaturePyramid",
    "CheckpointError", "PIXEL_MEAN", "PIXEL_STD",
]

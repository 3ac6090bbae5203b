"""Framework-free PyTorch modules: the PE ViT, 2-D RoPE, the simple feature pyramid."""
from .pyramid import LayerNorm2d, SimpleFeaturePyramid
from .rope import apply_rope, rope_table
from .vit import PEViT

__all__ = ["PEViT", "SimpleFeaturePyramid", "LayerNorm2d", "apply_rope", "rope_table"]

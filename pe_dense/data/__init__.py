"""The embedded default: small generated data with known answers (no binaries in git)."""
from .images import load_image, shapes_image, to_tensor

__all__ = ["shapes_image", "load_image", "to_tensor"]

"""The released PE vision towers, as data (one record per model).

Facts from ``core/vision_encoder/config.py`` of facebookresearch/perception_models (see shared/DESIGN.md §2).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

# Inputs: RGB in [0, 1], normalized with mean 0.5 / std 0.5 (= pixel values in [0, 255] with 127.5 / 127.5).
PIXEL_MEAN = (0.5, 0.5, 0.5)
PIXEL_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class PESpec:
    name: str
    patch_size: int
    img_size: int  # pretraining resolution
    width: int
    depth: int
    heads: int
    mlp_dim: int
    cls_token: bool
    ls_init: Optional[float]  # LayerScale present (its init value) or None
    family: str  # "spatial" or "core"
    # PE-Core only: heads a dense backbone drops (ln_post, attention pooling, projection).
    output_dim: Optional[int] = None
    # Where the dense features are best for this tower (0-based block index); the default tap is the last block.
    best_dense_block: Optional[int] = None

    @property
    def grid(self) -> int:
        """Side of the pretraining token grid (the size of the released position table)."""
        return self.img_size // self.patch_size

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def hub_id(self) -> str:
        return f"facebook/{self.name}"

    @property
    def hub_filename(self) -> str:
        return f"{self.name}.pt"


def _spec(name, patch, img, width, depth, heads, mlp, cls, ls, family, out=None, best=None):
    return PESpec(name, patch, img, width, depth, heads, mlp, cls, ls, family, out, best)


_SPECS: List[PESpec] = [
    _spec("PE-Spatial-T16-512", 16, 512, 192, 12, 3, 768, True, None, "spatial"),
    _spec("PE-Spatial-S16-512", 16, 512, 384, 12, 6, 1536, True, None, "spatial"),
    _spec("PE-Spatial-B16-512", 16, 512, 768, 12, 12, 3072, True, None, "spatial"),
    _spec("PE-Spatial-L14-448", 14, 448, 1024, 24, 16, 4096, True, None, "spatial"),
    _spec("PE-Spatial-G14-448", 14, 448, 1536, 50, 16, 8960, False, 0.1, "spatial"),
    _spec("PE-Core-T16-384", 16, 384, 192, 12, 3, 768, True, None, "core", 512),
    _spec("PE-Core-S16-384", 16, 384, 384, 12, 6, 1536, True, None, "core", 512),
    _spec("PE-Core-B16-224", 16, 224, 768, 12, 12, 3072, True, None, "core", 1024),
    _spec("PE-Core-L14-336", 14, 336, 1024, 24, 16, 4096, True, None, "core", 1024),
    # PE-Spatial-G was distilled from block 41 (of 50) of PE-Core-G: its best dense features are there.
    _spec("PE-Core-G14-448", 14, 448, 1536, 50, 16, 8960, False, None, "core", 1280, best=40),
]
SPECS: Dict[str, PESpec] = {s.name: s for s in _SPECS}


def list_models() -> List[str]:
    """Names of the released PE vision towers, in the zoo's order."""
    return list(SPECS)


def get_spec(name: str) -> PESpec:
    if isinstance(name, PESpec):
        return name
    try:
        return SPECS[name]
    except KeyError:
        raise KeyError(
            f"Unknown PE model {name!r}. Valid names: {', '.join(SPECS)}"
        ) from None

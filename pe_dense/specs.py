"""The released PE vision towers, as data (one record per model).

Facts from ``core/vision_encoder/config.py`` of facebookresearch/perception_models (see shared/DESIGN.md §2).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

from .errors import UnknownNameError

# Inputs: RGB in [0, 1], normalized with mean 0.5 / std 0.5 (= pixel values in [0, 255] with 127.5 / 127.5).
PIXEL_MEAN = (0.5, 0.5, 0.5)
PIXEL_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class PESpec:
    """One released tower, as the released ``PEConfig`` entries: keyword fields."""

    name: str
    family: str  # "spatial", "core" or "lang"
    patch_size: int
    img_size: int  # pretraining resolution
    width: int
    depth: int
    heads: int
    mlp_dim: int
    cls_token: bool  # the weights carry a class token (class_embedding and a class row in the position table)
    ls_init: Optional[float]  # LayerScale present (its init value) or None
    timm_name: str  # timm's model of the same tower (the numerical reference of the tests and benchmarks)
    # PE-Core only: width of the image-level projection a dense backbone drops (ln_post, attention pool, proj)
    output_dim: Optional[int] = None

    @property
    def grid(self) -> int:
        """Side of the pretraining token grid (the size of the released position table)."""
        return self.img_size // self.patch_size

    @property
    def hub_id(self) -> str:
        """The released weights' repository on the Hugging Face hub."""
        return f"facebook/{self.name}"

    @property
    def hub_filename(self) -> str:
        """The weights file in that repository."""
        return f"{self.name}.pt"


_SPECS: List[PESpec] = [
    PESpec(name="PE-Spatial-T16-512", family="spatial", patch_size=16, img_size=512, width=192, depth=12, heads=3,
           mlp_dim=768, cls_token=True, ls_init=None, timm_name="vit_pe_spatial_tiny_patch16_512"),
    PESpec(name="PE-Spatial-S16-512", family="spatial", patch_size=16, img_size=512, width=384, depth=12, heads=6,
           mlp_dim=1536, cls_token=True, ls_init=None, timm_name="vit_pe_spatial_small_patch16_512"),
    PESpec(name="PE-Spatial-B16-512", family="spatial", patch_size=16, img_size=512, width=768, depth=12, heads=12,
           mlp_dim=3072, cls_token=True, ls_init=None, timm_name="vit_pe_spatial_base_patch16_512"),
    PESpec(name="PE-Spatial-L14-448", family="spatial", patch_size=14, img_size=448, width=1024, depth=24, heads=16,
           mlp_dim=4096, cls_token=True, ls_init=None, timm_name="vit_pe_spatial_large_patch14_448"),
    PESpec(name="PE-Spatial-G14-448", family="spatial", patch_size=14, img_size=448, width=1536, depth=50, heads=16,
           mlp_dim=8960, cls_token=False, ls_init=0.1, timm_name="vit_pe_spatial_gigantic_patch14_448"),
    PESpec(name="PE-Core-T16-384", family="core", patch_size=16, img_size=384, width=192, depth=12, heads=3,
           mlp_dim=768, cls_token=True, ls_init=None, timm_name="vit_pe_core_tiny_patch16_384", output_dim=512),
    PESpec(name="PE-Core-S16-384", family="core", patch_size=16, img_size=384, width=384, depth=12, heads=6,
           mlp_dim=1536, cls_token=True, ls_init=None, timm_name="vit_pe_core_small_patch16_384", output_dim=512),
    PESpec(name="PE-Core-B16-224", family="core", patch_size=16, img_size=224, width=768, depth=12, heads=12,
           mlp_dim=3072, cls_token=True, ls_init=None, timm_name="vit_pe_core_base_patch16_224", output_dim=1024),
    PESpec(name="PE-Core-L14-336", family="core", patch_size=14, img_size=336, width=1024, depth=24, heads=16,
           mlp_dim=4096, cls_token=True, ls_init=None, timm_name="vit_pe_core_large_patch14_336", output_dim=1024),
    # PE-Spatial-G was distilled from block 41 (of 50) of PE-Core-G: its best dense features are there (index 40)
    PESpec(name="PE-Core-G14-448", family="core", patch_size=14, img_size=448, width=1536, depth=50, heads=16,
           mlp_dim=8960, cls_token=False, ls_init=None, timm_name="vit_pe_core_gigantic_patch14_448",
           output_dim=1280),
    # PE-Lang: PE-Core towers aligned to a language model (the paper's section 4), cut where that alignment was
    # trained: L keeps 23 blocks, G 47 (of Core-G's 50), both with LayerScale
    PESpec(name="PE-Lang-L14-448", family="lang", patch_size=14, img_size=448, width=1024, depth=23, heads=16,
           mlp_dim=4096, cls_token=True, ls_init=0.1, timm_name="vit_pe_lang_large_patch14_448"),
    PESpec(name="PE-Lang-G14-448", family="lang", patch_size=14, img_size=448, width=1536, depth=47, heads=16,
           mlp_dim=8960, cls_token=False, ls_init=0.1, timm_name="vit_pe_lang_gigantic_patch14_448"),
]
SPECS: Dict[str, PESpec] = {s.name: s for s in _SPECS}


@dataclass(frozen=True)
class TextSpec:
    """A PE-Core text tower, as the released ``PETextConfig`` (causal transformer, argmax (end-of-text) pooling,
    a bias-free projection; vocabulary 49408, OpenAI CLIP's BPE)."""

    context_length: int
    width: int
    heads: int
    layers: int
    output_dim: int
    mlp_ratio: float = 4.0
    vocab_size: int = 49408


_TEXT_S = TextSpec(context_length=32, width=512, heads=8, layers=12, output_dim=512)
_TEXT_L = TextSpec(context_length=32, width=1024, heads=16, layers=24, output_dim=1024)
# the released PE_TEXT_CONFIG: T shares S's text tower, B shares L's
TEXT_SPECS: Dict[str, TextSpec] = {
    "PE-Core-T16-384": _TEXT_S,
    "PE-Core-S16-384": _TEXT_S,
    "PE-Core-B16-224": _TEXT_L,
    "PE-Core-L14-336": _TEXT_L,
    "PE-Core-G14-448": TextSpec(context_length=72, width=1280, heads=20, layers=24, output_dim=1280),
}
# heads of the vision tower's attention pooling (the released PEConfig.attn_pooler_heads, the same for every size)
ATTN_POOL_HEADS = 8


def list_clip_models() -> List[str]:
    """The released PE models with a text tower (PE-Core: CLIP models)."""
    return list(TEXT_SPECS)


def get_text_spec(name: str) -> TextSpec:
    spec = get_spec(name)
    if spec.name not in TEXT_SPECS:
        raise UnknownNameError(
            f"{spec.name} has no text tower: only PE-Core models are CLIP models ({', '.join(TEXT_SPECS)}). "
            f"PE-Spatial and PE-Lang are vision towers alone.")
    return TEXT_SPECS[spec.name]


def list_models() -> List[str]:
    """Names of the released PE vision towers, in the zoo's order."""
    return list(SPECS)


def get_spec(name: str) -> PESpec:
    if isinstance(name, PESpec):
        return name
    try:
        return SPECS[name]
    except KeyError:
        raise UnknownNameError(
            f"Unknown PE model {name!r}. Valid names: {', '.join(SPECS)}"
        ) from None

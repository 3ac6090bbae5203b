"""The PE vision transformer as a dense-prediction backbone, in plain PyTorch.

Parameter names are those of the released checkpoints (``conv1``, ``class_embedding``, ``positional_embedding``,
``ln_pre``, ``transformer.resblocks.N.*``), so a released state dict loads as it is.

ViTDet adaptations: window attention in all blocks but ``global_blocks`` (windows pad the grid when it does not
divide, as in ViTDet), RoPE and the position table computed per window, drop path, activation checkpointing,
frozen blocks, taps at any block (``out_indices``).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import PEDenseError, WrongTypeError
from .rope import ROPE_MODES, apply_rope, rope_table

POS_EMBED_MODES = ("interpolate", "bicubic", "tile")
FIT_MODES = ("pad", "resize")


def ceil_div(a, b):
    """``ceil(a / b)`` for positive sizes, written without negative operands: exporters (ONNX's Div truncates
    toward zero) do not all keep Python's floor division of negative numbers."""
    return (a + b - 1) // b


def round_up(a, b):
    """``a`` rounded up to a multiple of ``b`` (the padded size)."""
    return ceil_div(a, b) * b


def exporting() -> bool:
    """True while ``torch.export`` / ``torch.onnx.export`` traces the model. Shape tests (does the grid divide,
    is the table already the right size) are then skipped and the general path taken (a zero pad, a same-size
    resize: both exact no-ops), so the exported graph holds for every input size, not the traced one's case."""
    is_exporting = getattr(torch.compiler, "is_exporting", None)  # torch >= 2.5
    return bool(is_exporting is not None and is_exporting()) or torch.onnx.is_in_onnx_export()


def resize_grid(table: torch.Tensor, size: Tuple[int, int], mode: str = "interpolate") -> torch.Tensor:
    """(1, C, h, w) position table -> ``size``: bilinear (``"interpolate"``, the released behaviour) or bicubic with
    antialias (``"bicubic"``, timm's), align_corners=False; resampled in fp32 whatever the table's dtype (bf16
    weights too), returned in the table's dtype."""
    if tuple(table.shape[-2:]) == tuple(size) and not exporting():
        return table
    if mode == "bicubic":
        return F.interpolate(table.float(), size=size, mode="bicubic", align_corners=False,
                             antialias=True).to(table.dtype)
    return F.interpolate(table.float(), size=size, mode="bilinear", align_corners=False).to(table.dtype)


def tile_grid(table: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """(1, C, p, p) table repeated over a grid of ``size`` (the released detection recipe's tiling)."""
    p = table.shape[-1]
    return table.repeat(1, 1, ceil_div(size[0], p), ceil_div(size[1], p))[..., : size[0], : size[1]]


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_value: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x):
        return x * self.gamma


class DropPath(nn.Module):
    """Stochastic depth per sample (Huang et al. 2016), scaled by the keep probability."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x):
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self):
        return f"p={self.p:.3f}"


class Attention(nn.Module):
    """Multi-head self-attention with 2-D RoPE on q and k, through ``scaled_dot_product_attention``; ``causal``: each
    token attends to itself and the tokens before it (the text tower)."""

    def __init__(self, dim: int, heads: int, causal: bool = False):
        super().__init__()
        self.causal = causal
        if dim % heads:
            raise PEDenseError(f"width {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.head_dim = dim // heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def qkv(self, x: torch.Tensor, rope: Optional[torch.Tensor]):
        """(B, N, C) -> q, k, v, each (B, heads, N, C / heads), q and k rotated by ``rope``."""
        B, N, C = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        qkv = qkv.view(B, N, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if rope is not None:
            q = apply_rope(q, rope)
            k = apply_rope(k, rope)
        return q, k, v

    def forward(self, x: torch.Tensor, rope: Optional[torch.Tensor]):
        B, N, C = x.shape
        q, k, v = self.qkv(x, rope)
        x = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return self.out_proj(x.transpose(1, 2).reshape(B, N, C))


def window_partition(x: torch.Tensor, ws: int) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """(B, H, W, C) -> (B * nW, ws * ws, C), zero-padding H and W up to multiples of ws (as ViTDet)."""
    B, H, W, C = x.shape
    ph, pw = round_up(H, ws) - H, round_up(W, ws) - W
    if ph or pw or exporting():
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
    Hp, Wp = H + ph, W + pw
    x = x.view(B, Hp // ws, ws, Wp // ws, ws, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, C), (Hp, Wp)


def window_unpartition(x: torch.Tensor, ws: int, padded: Tuple[int, int], hw: Tuple[int, int]) -> torch.Tensor:
    Hp, Wp = padded
    H, W = hw
    C = x.shape[-1]
    B = x.shape[0] // ((Hp // ws) * (Wp // ws))
    x = x.view(B, Hp // ws, Wp // ws, ws, ws, C).permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, C)
    return x[:, :H, :W, :]


class Block(nn.Module):
    """Pre-norm transformer block (released names: ln_1, attn, ls_1, ln_2, mlp.c_fc/c_proj, ls_2)."""

    def __init__(self, dim, heads, mlp_dim, ls_init=None, eps=1e-5, drop_path=0.0, window_size=0, causal=False):
        super().__init__()
        self.window_size = window_size
        self.ln_1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads, causal=causal)
        self.ls_1 = LayerScale(dim, ls_init) if ls_init is not None else nn.Identity()
        self.ln_2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = nn.Sequential(
            OrderedDict(
                [("c_fc", nn.Linear(dim, mlp_dim)), ("gelu", nn.GELU()), ("c_proj", nn.Linear(mlp_dim, dim))]
            )
        )
        self.ls_2 = LayerScale(dim, ls_init) if ls_init is not None else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, hw: Tuple[int, int], rope):
        y = self.ln_1(x)
        if self.window_size:
            B, _, C = y.shape
            y, padded = window_partition(y.view(B, hw[0], hw[1], C), self.window_size)
            y = self.attn(y, rope)
            y = window_unpartition(y, self.window_size, padded, hw).reshape(B, -1, C)
        else:
            y = self.attn(y, rope)
        x = x + self.drop_path(self.ls_1(y))
        return x + self.drop_path(self.ls_2(self.mlp(self.ln_2(x))))


class Transformer(nn.Module):
    def __init__(self, blocks: Sequence[Block]):
        super().__init__()
        self.resblocks = nn.ModuleList(blocks)


class PEViT(nn.Module):
    """The PE vision tower; ``forward(x)`` returns one (B, C, H/p, W/p) map per entry of ``out_indices``.

    Args:
        patch_size, width, depth, heads, mlp_dim: the architecture (see ``pe_dense.specs``).
        cls_token: the weights carry a class token (``class_embedding`` and a class row in the position table).
        ls_init: LayerScale init value, or None for no LayerScale.
        pretrain_grid: side of the pretraining token grid; the reference of ``rope="interpolate"``.
        rope_grid: the reference grid of ``rope="interpolate"`` when it is not the pretraining grid (the released
            DETA_pe builds its RoPE with ``pt_hw_seq_len=16`` for every size: positions span 16 there).
        img_size: the position table is held for an ``img_size // patch_size`` square grid (default: the
            pretraining grid) and resampled at run time to the input's grid as ``pos_embed`` says.
        out_indices: blocks whose outputs are returned (negative indices count from the end). Blocks past the
            deepest one are not run, and their parameters are frozen.
        window_size: tokens per window side for window attention (0: global attention in every block).
        global_blocks: blocks that keep global attention when ``window_size > 0``.
        pos_embed: ``"interpolate"`` (bilinear, the released behaviour), ``"bicubic"`` (bicubic with antialias,
            timm's), or ``"tile"`` (the released detection recipe: the table, resized to the window when it
            differs, is tiled over the grid).
        rope: ``"extrapolate"`` (integer positions, PE) or ``"interpolate"`` (positions rescaled to span the
            pretraining grid, timm and the released detection recipe's global blocks).
        use_cls_token: run the class token through the blocks (default: when the weights have one and no window
            attention is used; window attention cannot carry it).
        return_class_token: with each tap also return the class token after that block: ``forward`` then returns
            (map, (B, C) token) pairs, as DINOv2's ``get_intermediate_layers(return_class_token=True)`` (its linear
            depth probe concatenates the token to every patch). Needs a tower whose class token runs.
        drop_path_rate: stochastic depth, linear from 0 to this value over the blocks.
        act_checkpoint: recompute each block in the backward pass (activation checkpointing).
        compile_blocks: compile each block with ``torch.compile`` (inductor; regional compilation): the blocks of one
            kind (windowed, global) share one compiled graph, so compiling costs about one block's time, and the
            tower compiles inside models that cannot be compiled whole (Detectron2's detectors, MMSeg's segmentors).
            A new input size recompiles (then compiles shape-generic code).
        frozen_blocks: freeze patch embedding, position table, class token, ln_pre and the first N blocks
            (-1: all). Frozen parts stay in eval mode.
        ln_eps: LayerNorm epsilon (1e-5, the released value).
        fit: how an input whose sides are not multiples of the patch is fitted: ``"pad"`` (zero-pad bottom/right;
            the maps cover the padded canvas, token (i, j) sees pixels [i*p, (i+1)*p)) or ``"resize"`` (resize the
            image bilinearly up to the next multiple of the patch; the maps cover exactly the input, as frameworks
            that resize predictions back to the input size (MMSeg) expect).
    """

    def __init__(
        self,
        patch_size: int = 16,
        width: int = 768,
        depth: int = 12,
        heads: int = 12,
        mlp_dim: int = 3072,
        cls_token: bool = True,
        ls_init: Optional[float] = None,
        pretrain_grid: int = 32,
        rope_grid: Optional[int] = None,
        img_size: Optional[int] = None,
        out_indices: Sequence[int] = (-1,),
        window_size: int = 0,
        global_blocks: Sequence[int] = (),
        pos_embed: str = "interpolate",
        rope: str = "extrapolate",
        use_cls_token: Optional[bool] = None,
        return_class_token: bool = False,
        drop_path_rate: float = 0.0,
        act_checkpoint: bool = False,
        compile_blocks: bool = False,
        frozen_blocks: int = 0,
        ln_eps: float = 1e-5,
        fit: str = "pad",
        name: str = "PEViT",
    ):
        super().__init__()
        if fit not in FIT_MODES:
            raise PEDenseError(f"fit must be one of {FIT_MODES}, got {fit!r}")
        if pos_embed not in POS_EMBED_MODES:
            raise PEDenseError(f"pos_embed must be one of {POS_EMBED_MODES}, got {pos_embed!r}")
        if rope not in ROPE_MODES:
            raise PEDenseError(f"rope must be one of {ROPE_MODES}, got {rope!r}")
        if window_size < 0:
            raise PEDenseError(f"window_size must be >= 0, got {window_size}")
        if patch_size < 1:
            raise PEDenseError(f"patch_size must be >= 1, got {patch_size}")
        if img_size is not None and img_size < patch_size:
            raise PEDenseError(f"img_size={img_size} is smaller than one patch ({patch_size} px): the position table "
                               f"needs at least a 1x1 grid")
        if not 0.0 <= drop_path_rate < 1.0:
            raise PEDenseError(f"drop_path_rate must be in [0, 1), got {drop_path_rate} (1 would drop every block)")
        if use_cls_token is None:
            use_cls_token = cls_token and window_size == 0
        if use_cls_token and not cls_token:
            raise PEDenseError(f"{name} has no class token (use_cls_token=True asks for one)")
        if use_cls_token and window_size:
            raise PEDenseError("the class token cannot go through window attention: use_cls_token=False "
                               "(the released detection recipe drops it) or window_size=0")
        if return_class_token and not use_cls_token:
            raise PEDenseError(f"return_class_token=True: {name} " + (
                "runs no class token (use_cls_token=False)" if cls_token else
                "has no class token (PE-Spatial-G and PE-Core-G have none: probe the patch tokens only)"))
        out_indices = [int(i) for i in out_indices]
        bad = [i for i in out_indices if not -depth <= i < depth]
        if not out_indices or bad:
            raise PEDenseError(f"out_indices {out_indices}: {name} has blocks 0..{depth - 1} (or -{depth}..-1)")
        bad = [i for i in global_blocks if not -depth <= int(i) < depth]
        if bad:
            raise PEDenseError(f"global_blocks {list(global_blocks)}: {name} has blocks 0..{depth - 1} "
                               f"(or -{depth}..-1); {bad} out of range")
        global_blocks = sorted({int(i) % depth for i in global_blocks})
        if frozen_blocks > depth:
            raise PEDenseError(f"frozen_blocks={frozen_blocks} but {name} has {depth} blocks (-1 freezes all)")
        img_size = img_size if img_size is not None else pretrain_grid * patch_size

        self.name = name
        self.patch_size = patch_size
        self.width = width
        self.depth = depth
        self.heads = heads
        self.cls_token = cls_token
        self.use_cls_token = use_cls_token
        self.return_class_token = return_class_token
        self.pretrain_grid = pretrain_grid
        if rope_grid is not None and rope_grid < 1:
            raise PEDenseError(f"rope_grid must be a positive number of tokens, got {rope_grid}")
        self.rope_grid = int(rope_grid or pretrain_grid)
        self.img_size = img_size
        self.pos_grid = img_size // patch_size
        self.out_indices = [i % depth for i in out_indices]
        self.window_size = window_size
        self.global_blocks = global_blocks if window_size else list(range(depth))
        self.pos_embed_mode = pos_embed
        self.rope_mode = rope
        self.act_checkpoint = act_checkpoint
        self.frozen_blocks = frozen_blocks
        self.fit = fit

        self.conv1 = nn.Conv2d(3, width, patch_size, patch_size, bias=False)
        scale = width**-0.5
        if cls_token:
            self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(int(cls_token) + self.pos_grid**2, width))
        self.ln_pre = nn.LayerNorm(width, eps=ln_eps)
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.transformer = Transformer(
            Block(width, heads, mlp_dim, ls_init, ln_eps, dpr[i], 0 if i in self.global_blocks else window_size)
            for i in range(depth)
        )
        self.compile_blocks = compile_blocks
        if compile_blocks:
            for blk in self.transformer.resblocks[: max(self.out_indices) + 1]:
                blk.compile()  # in place: parameter names (and checkpoints) unchanged
        # parameters that can never receive a gradient are frozen (DDP-friendly)
        for blk in self.transformer.resblocks[max(self.out_indices) + 1:]:
            blk.requires_grad_(False)
        if cls_token and not use_cls_token:
            self.class_embedding.requires_grad_(False)
        self._freeze()

    # ------------------------------------------------------------------ freezing
    def _frozen_modules(self) -> List[nn.Module]:
        n = self.depth if self.frozen_blocks < 0 else self.frozen_blocks
        if n == 0:
            return []
        return [self.conv1, self.ln_pre] + list(self.transformer.resblocks[:n])

    def _freeze(self):
        if self.frozen_blocks == 0:
            return
        for m in self._frozen_modules():
            m.requires_grad_(False)
        self.positional_embedding.requires_grad_(False)
        if self.cls_token:
            self.class_embedding.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self._frozen_modules():
            m.eval()
        return self

    # ------------------------------------------------------------------ position table
    def _patch_table(self) -> torch.Tensor:
        pos = self.positional_embedding[int(self.cls_token):]
        return pos.reshape(self.pos_grid, self.pos_grid, -1).permute(2, 0, 1).unsqueeze(0)

    def position_table(self, h: int, w: int) -> torch.Tensor:
        """Position embeddings for an (h, w) token grid, (h * w, C), class row excluded."""
        table = self._patch_table()
        if self.pos_embed_mode == "tile":
            period = self.window_size or self.pos_grid
            table = tile_grid(resize_grid(table, (period, period)), (h, w))
        else:
            table = resize_grid(table, (h, w), self.pos_embed_mode)
        return table.flatten(2).transpose(1, 2)[0]

    # ------------------------------------------------------------------ forward
    def _rope(self, grid, num_prefix, device):
        return rope_table(grid, self.width // self.heads, self.rope_mode, self.rope_grid,
                          float(self.cls_token), num_prefix, device)

    def forward(self, x: torch.Tensor, taps: Optional[Sequence[int]] = None) -> list:
        """``taps``: blocks to return for this call instead of ``out_indices`` (e.g. ``[-2]``: the tokens the last
        block reads)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise PEDenseError(f"{self.name} expects images of shape (B, 3, H, W), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise WrongTypeError(f"{self.name} expects float images normalized with pe_dense.PIXEL_MEAN / PIXEL_STD, "
                                 f"got {x.dtype}: convert with (x.float() / 255 - 0.5) / 0.5")
        B, _, H, W = x.shape
        if H == 0 or W == 0:
            raise PEDenseError(f"{self.name} got an empty image ({H}x{W})")
        if x.dtype != self.conv1.weight.dtype and not torch.is_autocast_enabled(x.device.type):
            x = x.to(self.conv1.weight.dtype)  # e.g. fp64 or fp16 images into fp32 weights
        p = self.patch_size
        if exporting() or H % p or W % p:
            if self.fit == "resize":  # the maps then cover exactly the input
                size = (round_up(H, p), round_up(W, p))
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            else:  # pad bottom/right to the patch size
                x = F.pad(x, (0, round_up(W, p) - W, 0, round_up(H, p) - H))
        x = self.conv1(x)
        h, w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2) + self.position_table(h, w)
        num_prefix = int(self.use_cls_token)  # tokens before the patch tokens (the class token, when it runs)
        if num_prefix:
            cls = self.class_embedding + self.positional_embedding[0]
            x = torch.cat([cls.view(1, 1, -1).expand(B, -1, -1).to(x.dtype), x], dim=1)
        x = self.ln_pre(x)

        rope_global = self._rope((h, w), num_prefix, x.device)
        rope_window = self._rope((self.window_size,) * 2, 0, x.device) if self.window_size else None
        outs = {}
        taps = self.out_indices if taps is None else [int(i) % len(self.transformer.resblocks) for i in taps]
        last = max(taps)
        for i, blk in enumerate(self.transformer.resblocks[: last + 1]):
            rope = rope_window if blk.window_size else rope_global
            if self.act_checkpoint and self.training and torch.is_grad_enabled():
                x = checkpoint(blk, x, (h, w), rope, use_reentrant=False)
            else:
                x = blk(x, (h, w), rope)
            if i in taps:
                outs[i] = x[:, num_prefix:].transpose(1, 2).reshape(B, self.width, h, w)
                if self.return_class_token:
                    outs[i] = (outs[i], x[:, 0])
        return [outs[i] for i in taps]

    def extra_repr(self):
        return (f"name={self.name}, patch={self.patch_size}, window={self.window_size}, "
                f"global_blocks={self.global_blocks if self.window_size else 'all'}, "
                f"pos_embed={self.pos_embed_mode}, rope={self.rope_mode}, out_indices={self.out_indices}, "
                f"fit={self.fit}")

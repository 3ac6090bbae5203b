"""PE-Core as a CLIP model, in plain PyTorch: the vision tower with its image-level head (``ln_post``, attention
pooling, ``proj``) and the text tower, under the released parameter names, so that ``PECLIP.state_dict()`` has
exactly the keys of a released PE-Core checkpoint (``visual.*`` beside the text tower's keys, as the released
``CLIP(TextTransformer)`` holds them).

As released (``core/vision_encoder/pe.py``): the image embedding is ``ln_post`` over every final token (the class
token included where the tower has one), attention pooling with one learned probe (8 heads, then a residual MLP
behind a LayerNorm), then ``@ proj``; the text embedding is a causal transformer over token + position embeddings,
``ln_final``, the end-of-text token's state (the largest token id of each row: ``argmax``), then
``@ text_projection``. Logits are ``exp(logit_scale)`` times the cosine similarity.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PEDenseError
from .vit import Attention, Block, PEViT, Transformer


class AttentionPooling(nn.Module):
    """The released ``AttentionPooling``: one learned probe attends over the tokens (``nn.MultiheadAttention``'s
    parameter layout: ``attn.in_proj_weight``, ``attn.in_proj_bias``, ``attn.out_proj``), then
    ``x + mlp(layernorm(x))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, eps: float = 1e-5):
        super().__init__()
        self.heads = heads
        self.probe = nn.Parameter(torch.randn(1, 1, dim))
        self.attn = Attention(dim, heads)  # its parameters: q, k, v projections stacked, and out_proj
        self.layernorm = nn.LayerNorm(dim, eps=eps)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(OrderedDict(
            [("c_fc", nn.Linear(dim, hidden)), ("gelu", nn.GELU()), ("c_proj", nn.Linear(hidden, dim))]))

    def _proj(self, x: torch.Tensor, which: int) -> torch.Tensor:
        """q (0), k (1) or v (2) of ``x`` (B, N, C), split into heads: (B, heads, N, C / heads)."""
        B, N, C = x.shape
        w = self.attn.in_proj_weight[which * C:(which + 1) * C]
        b = self.attn.in_proj_bias[which * C:(which + 1) * C]
        return F.linear(x, w, b).view(B, N, self.heads, C // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) tokens -> (B, C): the probe's attention over them, then the residual MLP."""
        B, N, C = x.shape
        q = self._proj(self.probe.expand(B, -1, -1).to(x.dtype), 0)
        y = F.scaled_dot_product_attention(q, self._proj(x, 1), self._proj(x, 2))
        y = self.attn.out_proj(y.transpose(1, 2).reshape(B, 1, C))
        return (y + self.mlp(self.layernorm(y)))[:, 0]


class CLIPVision(PEViT):
    """A PE-Core vision tower with its image-level head; ``forward`` gives the (B, output_dim) image embedding,
    ``tokens`` the final tokens (class token first where the tower has one) and their grid."""

    def __init__(self, output_dim: int, pool_heads: int = 8, **tower):
        tower.setdefault("return_class_token", tower.get("cls_token", True))
        super().__init__(**tower)
        if self.window_size:
            raise PEDenseError("a CLIP image tower runs global attention (window_size=0): its class token and "
                               "attention pooling see the whole image")
        self.output_dim = output_dim
        self.ln_post = nn.LayerNorm(self.width, eps=self.ln_pre.eps)
        self.attn_pool = AttentionPooling(self.width, pool_heads, eps=self.ln_pre.eps)
        self.proj = nn.Parameter(self.width ** -0.5 * torch.randn(self.width, output_dim))

    def tokens(self, x: torch.Tensor, tap: int = -1) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """(B, 3, H, W) -> (B, N, C) tokens after block ``tap`` (default: the final ones, before ``ln_post``; class
        token first, if any), and the grid."""
        out = super().forward(x, taps=[tap])[-1]
        fmap, cls = out if self.return_class_token else (out, None)
        B, C, h, w = fmap.shape
        tok = fmap.flatten(2).transpose(1, 2)
        if cls is not None:
            tok = torch.cat([cls[:, None], tok], dim=1)
        return tok, (h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tok, _ = self.tokens(x)
        return self.attn_pool(self.ln_post(tok)) @ self.proj


class TextTower(nn.Module):
    """The released ``TextTransformer`` (names: ``token_embedding``, ``positional_embedding``,
    ``transformer.resblocks.N.*``, ``ln_final``, ``text_projection``): causal blocks, argmax pooling."""

    def __init__(self, context_length: int, width: int, heads: int, layers: int, output_dim: int,
                 mlp_ratio: float = 4.0, vocab_size: int = 49408, eps: float = 1e-5):
        super().__init__()
        self.context_length = context_length
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(0.01 * torch.randn(context_length, width))
        self.transformer = Transformer(
            [Block(width, heads, int(width * mlp_ratio), eps=eps, causal=True) for _ in range(layers)])
        self.ln_final = nn.LayerNorm(width, eps=eps)
        self.text_projection = nn.Parameter(width ** -0.5 * torch.randn(width, output_dim))
        nn.init.normal_(self.token_embedding.weight, std=0.02)

    def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """(B, L) token ids (``tokenize``) -> (B, output_dim) text embeddings."""
        if text.ndim != 2 or text.dtype not in (torch.int64, torch.int32):
            raise PEDenseError(f"encode_text expects (B, L) integer token ids from tokenize(), got "
                               f"{tuple(text.shape)} {text.dtype}")
        if text.shape[1] > self.context_length:
            raise PEDenseError(f"{text.shape[1]} tokens per text, the tower holds {self.context_length}: tokenize "
                               f"with context_length={self.context_length}")
        x = self.token_embedding(text) + self.positional_embedding[: text.shape[1]]
        for blk in self.transformer.resblocks:
            x = blk(x, None, None)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0], device=x.device), text.argmax(dim=-1)] @ self.text_projection


class PECLIP(TextTower):
    """PE-Core as CLIP: ``encode_image``, ``encode_text`` and ``forward(image, text)`` -> (image embeddings, text
    embeddings, logit scale), as the released ``CLIP``; ``logits(image, text)`` -> (B_image, B_text)."""

    def __init__(self, vision: dict, text: dict, init_logit_scale: float = 2.6592600369644043):  # log(1 / 0.07)
        super().__init__(**text)
        self.visual = CLIPVision(**vision)
        self.logit_scale = nn.Parameter(torch.tensor(float(init_logit_scale)))

    @property
    def name(self) -> str:
        return self.visual.name

    def encode_image(self, image: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        x = self.visual(image)
        return F.normalize(x, dim=-1) if normalize else x

    def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        x = super().encode_text(text)
        return F.normalize(x, dim=-1) if normalize else x

    def forward(self, image=None, text=None):
        img = self.encode_image(image, normalize=True) if image is not None else None
        txt = self.encode_text(text, normalize=True) if text is not None else None
        return img, txt, self.logit_scale.exp()

    def logits(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        img, txt, scale = self(image, text)
        return scale * img @ txt.t()


# ---------------------------------------------------------------------------------------------------------------
# dense text-aligned features, training-free

DENSE_METHODS = ("value", "clearclip", "naclip", "proxy")
DENSE_METHOD_HELP = {
    "value": "the attention-pooling head's value path per patch (MaskCLIP's idea where PE pools): ln_post, the "
             "pooler's value and output projections, its residual MLP, proj; the tower itself unchanged",
    "clearclip": "ClearCLIP: in the last block, query-query attention and no residual or FFN; then the value path",
    "naclip": "NACLIP: in the last block, key-key attention plus a Gaussian neighbourhood prior (sigma in patches) "
              "and no residual or FFN; then the value path",
    "proxy": "ProxyCLIP: in the last block, attention from another tower's features (e.g. PE-Spatial's): cosine "
             "similarities standardized per patch, those below beta dropped, softmax at gamma, over PE-Core's "
             "values, no residual or FFN; then the value path",
}


def head_values(vision: CLIPVision, tokens: torch.Tensor) -> torch.Tensor:
    """(B, N, C) final tokens -> (B, N, output_dim): for each token, the image embedding the released head gives when
    its attention pooling sees that token alone (softmax over one key is 1: ``attn_pool(tok[:, i:i+1])``), i.e.
    ``(o + mlp(layernorm(o))) @ proj`` with ``o = out_proj(W_v ln_post(t) + b_v)``."""
    ap = vision.attn_pool
    t = vision.ln_post(tokens)
    C = t.shape[-1]
    o = ap.attn.out_proj(F.linear(t, ap.attn.in_proj_weight[2 * C:], ap.attn.in_proj_bias[2 * C:]))
    return (o + ap.mlp(ap.layernorm(o))) @ vision.proj


def _neighbourhood(h: int, w: int, sigma: float, prefix: int, device) -> torch.Tensor:
    """(N, N) additive log-prior -d^2 / (2 sigma^2) between patch positions (NACLIP); the class token (when the tower
    runs one) attends to itself only and no patch attends to it."""
    yy, xx = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    pos = torch.stack([yy.flatten(), xx.flatten()], -1).float()
    bias = -torch.cdist(pos, pos).square() / (2 * sigma ** 2)
    if not prefix:
        return bias
    out = torch.full((prefix + h * w,) * 2, float("-inf"), device=device)
    out[prefix:, prefix:] = bias
    out[:prefix, :prefix] = torch.where(torch.eye(prefix, dtype=torch.bool, device=device), 0.0, float("-inf"))
    return out


def _proxy_attention(proxy: torch.Tensor, hw: Tuple[int, int], prefix: int, beta: float, gamma: float):
    """(B, C', h', w') features of another tower -> (B, 1, N, N) attention (ProxyCLIP): resized to the grid, cosine
    similarities standardized per query patch, entries below ``beta`` dropped, softmax at ``gamma``; the class
    token (when the tower has one) attends to and is attended by nothing but itself."""
    if proxy.ndim != 4:
        raise PEDenseError(f"proxy features are (B, C, h, w) maps, got {tuple(proxy.shape)}")
    f = F.interpolate(proxy.float(), size=hw, mode="bilinear", align_corners=False) if proxy.shape[-2:] != hw \
        else proxy.float()
    f = F.normalize(f.flatten(2).transpose(1, 2), dim=-1)
    sim = f @ f.transpose(1, 2)
    z = (sim - sim.mean(-1, keepdim=True)) / sim.std(-1, keepdim=True).clamp_min(1e-6)
    # below beta dropped, except each patch itself (its similarity 1 is its row's largest: a row is never empty)
    drop = (z < beta) & ~torch.eye(z.shape[-1], dtype=torch.bool, device=z.device)
    z = z.masked_fill(drop, float("-inf"))
    attn = (gamma * z).softmax(-1)
    if prefix:
        attn = F.pad(attn, (prefix, 0, prefix, 0))
        attn[:, :prefix, :prefix] = torch.eye(prefix, device=attn.device)
    return attn[:, None]


def dense_embeddings(model: "PECLIP", image: torch.Tensor, method: str = "value", proxy: torch.Tensor = None,
                     sigma: float = 5.0, beta: float = 1.2, gamma: float = 3.0) -> torch.Tensor:
    """(B, 3, H, W) normalized images -> (B, output_dim, h, w) patch embeddings in the text space (not normalized),
    training-free, by ``method`` (``DENSE_METHODS``; what each changes: ``DENSE_METHOD_HELP``). ``proxy``: the
    (B, C', h', w') features whose similarities give the last block's attention (``method="proxy"``)."""
    if method not in DENSE_METHODS:
        raise PEDenseError(f"unknown dense method {method!r}: one of {', '.join(DENSE_METHODS)}")
    if method == "proxy" and proxy is None:
        raise PEDenseError("method 'proxy' needs the proxy tower's features (e.g. PE-Spatial's last block)")
    v = model.visual
    prefix = int(v.use_cls_token)
    if method == "value":
        tok, (h, w) = v.tokens(image)
    else:
        x, (h, w) = v.tokens(image, tap=-2)  # the tokens the last block reads
        B, N, C = x.shape
        blk = v.transformer.resblocks[-1]
        att = blk.attn
        q, k, val = att.qkv(blk.ln_1(x), v._rope((h, w), prefix, x.device))
        if method == "clearclip":
            out = F.scaled_dot_product_attention(q, q, val)
        elif method == "naclip":
            bias = _neighbourhood(h, w, sigma, prefix, x.device).to(q.dtype)
            out = F.scaled_dot_product_attention(k, k, val, attn_mask=bias)
        else:
            out = _proxy_attention(proxy, (h, w), prefix, beta, gamma).to(val.dtype) @ val
        tok = att.out_proj(out.transpose(1, 2).reshape(B, N, C))
    emb = head_values(v, tok)[:, prefix:]
    return emb.transpose(1, 2).reshape(emb.shape[0], -1, h, w)

"""Parameter and FLOP counts (fvcore), peak CPU memory of a call (the profiler), PCA pictures of features."""
from __future__ import annotations

import os
from typing import Dict, Optional, Tuple

import numpy as np
import torch


def cpu_peak_bytes(fn) -> int:
    """The most bytes held by PyTorch's CPU allocator during ``fn()`` above what was held before it: every allocation
    and free in order, as the profiler records them (``profile_memory=True``); the CPU twin of CUDA's
    ``max_memory_allocated() - memory_allocated()``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    held = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        held += e.nbytes()
        peak = max(peak, held)
    return peak


def _sdpa_flop(inputs, outputs):
    """fvcore handle for ``aten::scaled_dot_product_attention``: q@k^T and attn@v, in multiply-adds."""
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(inputs[i]) for i in range(3))
    *batch, nq, d = q
    nk, dv = k[-2], v[-1]
    b = int(np.prod(batch))
    return b * nq * nk * (d + dv)


def count_flops(model: torch.nn.Module, size: Tuple[int, int]) -> Dict[str, float]:
    """Multiply-add count (fvcore's convention, "FLOPs" as papers report) of one forward at ``size``."""
    from fvcore.nn import FlopCountAnalysis

    x = torch.zeros(1, 3, *size)
    was = model.training
    model.eval()
    try:
        fca = FlopCountAnalysis(model, x)
        fca.set_op_handle("aten::scaled_dot_product_attention", _sdpa_flop)
        fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        total = fca.total()
    finally:
        model.train(was)
    return {"gflops": total / 1e9, "unsupported": dict(fca.unsupported_ops())}


def model_flops(model, size: Tuple[int, int]) -> float:
    """FLOPs (2 per multiply-add) of one forward of a :class:`~pe_dense.PEViT` on an image of ``size``, written out
    from the architecture; the MFU of ``tools/benchmark.py`` divides by this. Per block, with N tokens of width D and
    an MLP of width M: ``2 (4 N D^2 + 2 N D M) + 4 N^2 D`` (qkv and output projections, MLP, q.k and attn.v), the
    attention term ``4 N_w w^2 D`` in a windowed block (windows of w x w tokens; projections and attention run over
    the N_w tokens of the zero-padded grid, as executed), plus the patch embedding ``2 N D 3 p^2``. Counts what the
    model executes: blocks past the deepest tap are not run; LayerNorm, GELU, RoPE and additions are left out (0.24%
    of PE-Spatial-T's total, 0.06% of L's). Equals 2 x fvcore's multiply-adds less its LayerNorm count
    (tests/test_benchmark.py)."""
    from .modeling.vit import ceil_div, round_up

    p, D = model.patch_size, model.width
    h, w = ceil_div(size[0], p), ceil_div(size[1], p)
    n = h * w + int(model.use_cls_token)
    total = 2 * h * w * D * 3 * p * p
    for blk in model.transformer.resblocks[: max(model.out_indices) + 1]:
        M = blk.mlp.c_fc.out_features
        ws = blk.window_size
        if ws:
            n_attn = round_up(h, ws) * round_up(w, ws)
            total += 2 * 4 * n_attn * D * D + 4 * n_attn * ws * ws * D
        else:
            total += 2 * 4 * n * D * D + 4 * n * n * D
        total += 2 * 2 * n * D * M
    return float(total)


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def pca_rgb(feat: torch.Tensor) -> np.ndarray:
    """(C, h, w) features -> (h, w, 3) uint8: the first three principal components, min-max scaled."""
    C, h, w = feat.shape
    x = feat.reshape(C, -1).T.double()
    x = x - x.mean(0, keepdim=True)
    _, _, v = torch.pca_lowrank(x, q=3, center=False)
    y = x @ v[:, :3]
    lo, hi = y.quantile(0.01, dim=0), y.quantile(0.99, dim=0)
    y = ((y - lo) / (hi - lo).clamp_min(1e-8)).clamp(0, 1)
    return (y.reshape(h, w, 3).numpy() * 255).astype(np.uint8)


def pca_picture(img, feat: torch.Tensor, path: str):
    """``img`` beside the PCA (``pca_rgb``) of its (C, h, w) features, at the image's size, written to ``path`` (the
    format from its extension, PNG by default). Returns the picture."""
    from PIL import Image

    from .io import write_atomic

    W, H = img.size
    canvas = Image.new("RGB", (2 * W, H))
    canvas.paste(img, (0, 0))
    canvas.paste(Image.fromarray(pca_rgb(feat)).resize((W, H), Image.NEAREST), (W, 0))
    fmt = Image.registered_extensions().get(os.path.splitext(path)[1].lower(), "PNG")
    write_atomic(path, lambda tmp: canvas.save(tmp, format=fmt))
    return canvas


def print_models():
    """``pe-dense list``: the released towers, their shapes and parameter counts."""
    from .factory import create_model
    from .specs import SPECS

    print(f"{'model':<20} {'family':<8} {'patch':>5} {'img':>4} {'width':>5} {'depth':>5} {'heads':>5} "
          f"{'mlp':>5} {'cls':>4} {'params(M)':>9}")
    for s in SPECS.values():
        with torch.device("meta"):
            n = count_params(create_model(s.name))
        print(f"{s.name:<20} {s.family:<8} {s.patch_size:>5} {s.img_size:>4} {s.width:>5} {s.depth:>5} "
              f"{s.heads:>5} {s.mlp_dim:>5} {'yes' if s.cls_token else 'no':>4} {n / 1e6:>9.1f}")


def print_info(name: str, size: Optional[int] = None, flops: bool = True, overrides: Optional[dict] = None):
    """``pe-dense info``: the tower's settings, parameters and (fvcore) FLOPs at ``size`` x ``size``."""
    from .factory import create_model
    from .specs import get_spec

    size = size or get_spec(name).img_size
    model = create_model(name, **(overrides or {}))
    print(model.extra_repr())
    print(f"parameters: {count_params(model) / 1e6:.2f} M")
    if flops:
        f = count_flops(model, (size, size))
        print(f"FLOPs at {size}x{size}: {f['gflops']:.2f} G multiply-adds (fvcore; elementwise ops not counted)")


PICTURE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF")


def features_picture(image: str = "builtin:shapes", out: str = "features_pca.png", model: str = "PE-Spatial-T16-512",
                     checkpoint: Optional[str] = None, block: int = -1, size: int = 448, max_side: Optional[int] = None,
                     overrides: Optional[dict] = None) -> np.ndarray:
    """``pe-dense features``: the image beside the PCA of one block's features (first three components as RGB),
    written to ``out`` (PNG, JPEG, WebP, BMP or TIFF by its extension). Returns the picture."""
    import time

    from PIL import Image

    from .data.images import load_image, to_tensor
    from .errors import PEDenseError
    from .factory import create_model

    fmt = Image.registered_extensions().get(os.path.splitext(out)[1].lower())
    if fmt not in PICTURE_FORMATS:
        raise PEDenseError(f"--out {out}: the picture is written as PNG, JPEG, WebP, BMP or TIFF; give --out a "
                           f".png, .jpg, .webp, .bmp or .tif name")
    img = load_image(image)
    tower = create_model(model, pretrained=checkpoint, out_indices=[block], **(overrides or {})).eval()
    max_side = max_side or 4 * size
    x = to_tensor(img, short_side=size, multiple=tower.patch_size, max_side=max_side)
    if max(img.size) * size / min(img.size) > max_side:
        print(f"note: {img.width}x{img.height} is elongated: the long side is capped at {max_side} px "
              f"(--max-side), so the short side is {min(x.shape[-2:])} px, not {size}")
    t0 = time.time()
    with torch.no_grad():
        feat = tower(x)[0][0]
    H, W = x.shape[-2:]
    canvas = pca_picture(img.resize((W, H), Image.BICUBIC), feat, out)
    print(f"{model} block {tower.out_indices[0]} features {tuple(feat.shape)} at {H}x{W} "
          f"in {time.time() - t0:.2f}s, weights: {checkpoint or 'random init (no --checkpoint)'}")
    print(f"wrote {out} (image | PCA of the features)")
    return np.asarray(canvas)

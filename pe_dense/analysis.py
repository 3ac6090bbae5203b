"""Parameter and FLOP counts (fvcore), PCA pictures of features."""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import torch


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

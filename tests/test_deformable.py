"""Multi-scale deformable attention (pe_dense.modeling.deformable), DETA's core, against answers from outside it: a
direct per-point computation of the bilinear samples (the definition: pixel (x W - 0.5, y H - 0.5), zeros outside),
mmcv's own ``multi_scale_deformable_attn_pytorch`` (upstream's function), and Deformable-DETR's initialization."""
import math

import pytest
import torch

from pe_dense.errors import PEDenseError
from pe_dense.modeling.deformable import MSDeformAttn, flatten_levels, level_start_index, ms_deform_attn

SHAPES = torch.tensor([[5, 7], [3, 4], [1, 2]])  # non-square levels, one a single row


def _inputs(seed=0, N=2, Q=3, M=2, D=4, P=3):
    g = torch.Generator().manual_seed(seed)
    S = int(SHAPES.prod(1).sum())
    value = torch.randn(N, S, M, D, generator=g, dtype=torch.float64)
    # locations in [-0.2, 1.2]: some fall outside the map (zeros), some on the border cells' halves
    locations = torch.rand(N, Q, M, len(SHAPES), P, 2, generator=g, dtype=torch.float64) * 1.4 - 0.2
    weights = torch.rand(N, Q, M, len(SHAPES), P, generator=g, dtype=torch.float64)
    return value, locations, weights


def _per_point(value, shapes, locations, weights):
    """The definition, one sample at a time: bilinear interpolation of the level's cell centres, zero outside."""
    N, _, M, D = value.shape
    _, Q, _, L, P, _ = locations.shape
    starts = level_start_index(shapes).tolist()
    out = torch.zeros(N, Q, M, D, dtype=value.dtype)
    for n in range(N):
        for q in range(Q):
            for m in range(M):
                for lvl in range(L):
                    H, W = shapes[lvl].tolist()
                    for p in range(P):
                        x = locations[n, q, m, lvl, p, 0].item() * W - 0.5
                        y = locations[n, q, m, lvl, p, 1].item() * H - 0.5
                        x0, y0 = math.floor(x), math.floor(y)
                        sample = torch.zeros(D, dtype=value.dtype)
                        for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
                            for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
                                if 0 <= yy < H and 0 <= xx < W:
                                    sample += wy * wx * value[n, starts[lvl] + yy * W + xx, m]
                        out[n, q, m] += weights[n, q, m, lvl, p] * sample
    return out.reshape(N, Q, M * D)


def test_sampling_equals_the_per_point_definition():
    value, locations, weights = _inputs()
    got = ms_deform_attn(value, SHAPES, locations, weights)
    want = _per_point(value, SHAPES, locations, weights)
    assert got.shape == (2, 3, 8)
    assert (got - want).abs().max().item() < 1e-12


def test_sampling_equals_mmcvs_pytorch_function():
    mod = pytest.importorskip("mmcv.ops.multi_scale_deform_attn")
    value, locations, weights = _inputs(seed=1, N=1, Q=50, M=8, D=32, P=4)
    value, locations, weights = value.float(), locations.float(), weights.float()
    want = mod.multi_scale_deformable_attn_pytorch(value, SHAPES, locations, weights)
    assert (ms_deform_attn(value, SHAPES, locations, weights) - want).abs().max().item() < 1e-5


def test_module_follows_deformable_detr():
    """Deformable-DETR's initialization (offsets on rays at the heads' angles, point i at i + 1 cells; uniform
    weights); with it and point references, point i of head m samples i + 1 cells along the head's ray, at every
    level; box references scale the offsets by the box's half size over the points."""
    torch.manual_seed(0)
    attn = MSDeformAttn(d_model=16, n_levels=3, n_heads=4, n_points=2)
    bias = attn.sampling_offsets.bias.view(4, 3, 2, 2)
    assert torch.allclose(bias[0, :, 1], torch.tensor([2.0, 0.0]))  # head 0: angle 0, point 1 at 2 cells
    assert torch.allclose(bias[1, :, 0], torch.tensor([0.0, 1.0]), atol=1e-6)  # head 1: 90 degrees
    assert torch.allclose(bias[3, :, 0], torch.tensor([0.0, -1.0]), atol=1e-6)
    q = torch.randn(1, 5, 16)
    ref = torch.rand(1, 5, 3, 2)
    loc, w = attn.sampling(q, ref, SHAPES)
    assert torch.allclose(w, torch.full_like(w, 1 / 6))
    cells = torch.tensor([[7.0, 5.0], [4.0, 3.0], [2.0, 1.0]])  # (W, H) per level
    assert torch.allclose((loc - ref[:, :, None, :, None]) * cells[None, None, None, :, None],
                          bias[None, None].expand_as(loc), atol=1e-5)
    box = torch.cat([ref, torch.full_like(ref, 0.4)], -1)
    loc, _ = attn.sampling(q, box, SHAPES)
    assert torch.allclose(loc - ref[:, :, None, :, None], bias[None, None] / 2 * 0.4 * 0.5, atol=1e-6)
    tokens, shapes = flatten_levels([torch.randn(1, 16, int(h), int(w)) for h, w in SHAPES])
    assert torch.equal(shapes, SHAPES) and tokens.shape == (1, 35 + 12 + 2, 16)
    out = attn(q, ref, tokens, shapes)
    assert out.shape == (1, 5, 16)
    # padding tokens carry no value: masking a level's tokens equals zeroing what they project to
    mask = torch.zeros(1, tokens.shape[1], dtype=torch.bool)
    mask[:, 35:] = True
    got = attn(q, ref, tokens, shapes, mask)
    v = attn.value_proj(tokens).masked_fill(mask[..., None], 0).view(1, -1, 4, 4)
    loc, w = attn.sampling(q, ref, SHAPES)
    assert torch.allclose(got, attn.output_proj(_per_point(v.double(), SHAPES, loc.double(), w.double()).float()),
                          atol=1e-5)


def test_bad_input_is_named():
    value, locations, weights = _inputs()
    with pytest.raises(PEDenseError, match=r"make 49 tokens over 3 levels, the value has 40"):
        ms_deform_attn(value[:, :40], SHAPES, locations, weights)
    with pytest.raises(PEDenseError, match="use_op=True needs CUDA tensors"):
        ms_deform_attn(value, SHAPES, locations, weights, use_op=True)
    with pytest.raises(PEDenseError, match="not divisible"):
        MSDeformAttn(d_model=10, n_heads=4)
    with pytest.raises(PEDenseError, match="end in 2"):
        MSDeformAttn(16, 3, 4, 2).sampling(torch.randn(1, 2, 16), torch.rand(1, 2, 3, 3), SHAPES)

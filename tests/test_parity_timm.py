"""Exactness: every block of every released tower equals timm's reference PE (``timm>=1.0.18``) within 1e-4.

timm's weights go through ``pe_dense.load_checkpoint`` (timm names -> released names), and a checkpoint written
in the released format (``visual.`` prefix, ``state_dict`` wrapper, PE-Core heads included) round-trips.
At a non-square size the released behaviour (bilinear position table, RoPE extrapolated on the integer grid) is
checked against timm configured that way (``rope.ref_feat_shape = None``, bilinear resampling), and timm's own behaviour
(bicubic+antialias table, rescaled RoPE) against ``pos_embed="bicubic", rope="interpolate"``.
(During development the first mode was also compared with the released ``core/vision_encoder`` code: max abs
diff 3.4e-6.)
"""
import functools
import gc

import pytest
import torch

import pe_dense
from pe_dense.specs import SPECS, get_spec

timm = pytest.importorskip("timm")
eva = pytest.importorskip("timm.models.eva")
TOL = 1e-4


def _timm_model(name, **kw):
    m = timm.create_model(get_spec(name).timm_name, pretrained=False, num_classes=0, **kw).eval()
    with torch.no_grad():  # perturb every parameter so that norms, biases and LayerScale are not trivial
        for p in m.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return m


def _timm_blocks(m, x):
    return m.forward_intermediates(x, indices=len(m.blocks), norm=False, output_fmt="NCHW",
                                   intermediates_only=True)


def _size(name, small):
    spec = get_spec(name)
    if not small:
        return spec.img_size, spec.img_size
    return spec.patch_size * 20, spec.patch_size * 30  # non-square, e.g. 320x480 for patch 16


BIG = {n for n, s in SPECS.items() if s.width >= 1536}  # the 1.8B towers
NAMES = [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n for n in SPECS]


@pytest.mark.parametrize("name", NAMES)
def test_native_size_every_block_matches_timm(name, tmp_path):
    spec = get_spec(name)
    big = name in BIG  # 1.8B parameters: at most two such models in memory at any time, 224 px
    # timm only runs below its native size with dynamic_img_size (bicubic table, rescaled RoPE): match its mode
    mode = dict(pos_embed="bicubic", rope="interpolate") if big else {}
    ref = _timm_model(name, dynamic_img_size=True) if big else _timm_model(name)
    ours = pe_dense.create_model(name, out_indices=list(range(spec.depth)), **mode).eval()
    pe_dense.load_checkpoint(ours, ref.state_dict())  # timm's names, through the loader
    H, W = (224, 224) if big else _size(name, False)
    x = torch.randn(1, 3, H, W)
    with torch.no_grad():
        want = _timm_blocks(ref, x)
        del ref
        gc.collect()
        got = ours(x)
    assert len(got) == spec.depth
    for i, (a, b) in enumerate(zip(got, want)):
        assert a.shape == b.shape
        assert (a - b).abs().max().item() < TOL, f"block {i}"

    # the released format: visual. prefix, state_dict wrapper, PE-Core heads (dropped), class token kept
    released = {"visual." + k: v for k, v in ours.state_dict().items()}
    if spec.output_dim:  # PE-Core
        released["visual.ln_post.weight"] = torch.ones(spec.width)
        released["visual.proj"] = torch.randn(spec.width, spec.output_dim)
        released["visual.attn_pool.probe"] = torch.randn(1, 1, spec.width)
    released["logit_scale"] = torch.ones(())
    if big:  # 7 GB: round-trip in memory rather than through the disk
        source = {"state_dict": released}
    else:
        source = str(tmp_path / "released.pt")
        torch.save({"state_dict": released}, source)
    fresh = pe_dense.create_model(name, out_indices=list(range(spec.depth)), pretrained=source, **mode).eval()
    with torch.no_grad():
        again = fresh(x)
    for a, b in zip(again, got):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", [n for n in SPECS if n not in BIG] + [
    pytest.param("PE-Spatial-G14-448", marks=pytest.mark.slow)])
def test_non_square_size_released_and_timm_modes(name, monkeypatch):
    spec = get_spec(name)
    depth = spec.depth
    H, W = _size(name, True)
    x = torch.randn(1, 3, H, W)

    # timm's own behaviour: bicubic (antialiased) position table, RoPE rescaled to the reference grid
    ref = _timm_model(name, dynamic_img_size=True)
    ours = pe_dense.create_model(name, out_indices=list(range(depth)), pos_embed="bicubic",
                                 rope="interpolate").eval()
    pe_dense.load_checkpoint(ours, ref.state_dict())
    with torch.no_grad():
        for i, (a, b) in enumerate(zip(ours(x), _timm_blocks(ref, x))):
            assert (a - b).abs().max().item() < TOL, f"timm mode, block {i}"
    del ref, ours  # at most two large models in memory
    gc.collect()

    # the released behaviour: bilinear table (align_corners=False, no antialias), integer-grid RoPE
    monkeypatch.setattr(eva, "resample_abs_pos_embed",
                        functools.partial(eva.resample_abs_pos_embed, interpolation="bilinear", antialias=False))
    ref = _timm_model(name, dynamic_img_size=True)
    ref.rope.ref_feat_shape = None  # integer grid (timm.create_model drops None-valued kwargs)
    ours = pe_dense.create_model(name, out_indices=list(range(depth))).eval()  # the defaults
    pe_dense.load_checkpoint(ours, ref.state_dict())
    with torch.no_grad():
        got, want = ours(x), _timm_blocks(ref, x)
    for i, (a, b) in enumerate(zip(got, want)):
        assert a.shape == (1, spec.width, H // spec.patch_size, W // spec.patch_size)
        assert (a - b).abs().max().item() < TOL, f"released mode, block {i}"

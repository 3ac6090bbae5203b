"""Exactness: every block of every released tower equals timm's reference PE (``timm>=1.0.18``) within 1e-4.

timm's weights go through ``pe_dense.load_checkpoint`` (timm names -> released names), and a checkpoint written
in the released format (``visual.`` prefix, ``state_dict`` wrapper, PE-Core heads included) round-trips.
At a non-square size the released behaviour (bilinear position table, RoPE extrapolated on the integer grid) is
checked against timm configured that way (``rope.ref_feat_shape = None``, bilinear resampling), and timm's own behaviour
(bicubic+antialias table, rescaled RoPE) against ``pos_embed="bicubic", rope="interpolate"``.
(During development the first mode was also compared with the released ``core/vision_encoder`` code: max abs
diff 3.4e-6.)
"""
import contextlib
import functools
import os
import sys

import pytest
import torch

import pe_dense
from pe_dense.checkpoint import to_released_names
from pe_dense.specs import SPECS, get_spec

sys.path.insert(0, os.path.dirname(__file__))
from pooled import pooled_state  # noqa: E402

timm = pytest.importorskip("timm")
eva = pytest.importorskip("timm.models.eva")
TOL = 1e-4


def _timm_model(name, **kw):
    m = timm.create_model(get_spec(name).timm_name, pretrained=False, num_classes=0, **kw).eval()
    with torch.no_grad():  # perturb every parameter so that norms, biases and LayerScale are not trivial
        for p in m.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return m


BIG = {n for n, s in SPECS.items() if s.width >= 1536}  # the 1.8B towers
POOLED = {n for n, s in SPECS.items() if s.width >= 1024}  # L and G: weights from tests/pooled.py


def _timm_pooled(name, **kw):
    """timm's own tower (its modules, built from its config on the meta device) whose block weights are views into
    one random pool (``tests/pooled.py``): every block differs, and the weights cost no memory of their own. The stem
    (patch embedding, position table, RoPE, ln_pre) is that of a 1-block timm model of the same config, perturbed as
    ``_timm_model`` does. pe_dense then takes these very tensors (``load_checkpoint(assign=True)`` into a meta-built
    tower): a 1.8B tower's test holds the pool, never a whole tower, let alone two."""
    spec = get_spec(name)
    with torch.device("meta"):
        ref = timm.create_model(spec.timm_name, pretrained=False, num_classes=0, **kw)
    donor = _timm_model(name, depth=1, **kw)
    sd = {k: v for k, v in donor.state_dict().items() if not k.startswith("blocks.")}
    blocks = {k: v for k, v in ref.state_dict().items() if k.startswith("blocks.")}
    sd.update(pooled_state(blocks, lambda k: k.endswith(("norm1.weight", "norm2.weight")),
                           lambda k: ".gamma_" in k, spec.ls_init or 0.0))
    ref.load_state_dict(sd, assign=True)
    ref.rope = donor.rope  # its frequency bands are a non-persistent buffer, made on the meta device above
    assert not any(t.is_meta for t in list(ref.parameters()) + list(ref.buffers()))
    return ref.eval()


def _ours(name, ref, **kw):
    """pe_dense's tower with timm's weights through the loader (timm names -> released names); an L or G tower is
    built on the meta device and takes timm's tensors themselves."""
    spec = get_spec(name)
    pooled = name in POOLED
    with torch.device("meta") if pooled else contextlib.nullcontext():
        ours = pe_dense.create_model(name, out_indices=list(range(spec.depth)), **kw)
    return pe_dense.load_checkpoint(ours, ref.state_dict(), assign=pooled).eval()


def _timm_blocks(m, x):
    return m.forward_intermediates(x, indices=len(m.blocks), norm=False, output_fmt="NCHW",
                                   intermediates_only=True)


def _size(name, small):
    spec = get_spec(name)
    if not small:
        return spec.img_size, spec.img_size
    if name in BIG:
        return spec.patch_size * 8, spec.patch_size * 12  # 112 x 168: non-square, 96 tokens (time goes with them)
    # non-square, fewer rows and more columns than the pretraining grid (the table and RoPE shrink along one axis and
    # grow along the other), 240 tokens: e.g. 96 x 640 px for patch 16
    return spec.patch_size * 6, spec.patch_size * 40


NAMES = list(SPECS)


def test_big_towers_have_timms_structure():
    """The 1.8B towers' whole structure (every key and shape of all blocks) equals timm's config, on the meta device:
    the numerical checks below then need no whole tower in memory."""
    for name in BIG:
        with torch.device("meta"):
            ref = timm.create_model(get_spec(name).timm_name, pretrained=False, num_classes=0)
            ours = pe_dense.create_model(name)
        want = {k: tuple(v.shape) for k, v in to_released_names(ref.state_dict()).items()}
        got = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
        assert got == want, name


@pytest.mark.parametrize("name", NAMES)
def test_native_size_every_block_matches_timm(name, tmp_path):
    spec = get_spec(name)
    big = name in BIG  # 1.8B parameters: 112 px (64 tokens), timm in its dynamic-size mode
    # timm only runs below its native size with dynamic_img_size (bicubic table, rescaled RoPE): match its mode
    mode = dict(pos_embed="bicubic", rope="interpolate") if big else {}
    if name in POOLED:
        ref = _timm_pooled(name, **(dict(dynamic_img_size=True) if big else {}))
    else:
        ref = _timm_model(name)
    ours = _ours(name, ref, **mode)
    H, W = (112, 112) if big else _size(name, False)
    x = torch.randn(1, 3, H, W)
    with torch.no_grad():
        want = _timm_blocks(ref, x)
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
    if name in POOLED:  # 1.2 / 7 GB: round-trip in memory, into a meta-built tower that takes the tensors
        with torch.device("meta"):  # equal weights: equal outputs
            fresh = pe_dense.create_model(name, out_indices=list(range(spec.depth)), **mode)
        pe_dense.load_checkpoint(fresh, {"state_dict": released}, assign=True)
        mine = ours.state_dict()
        assert all(torch.equal(v, mine[k]) for k, v in fresh.state_dict().items()) and fresh.state_dict().keys() \
            == mine.keys()
        return
    source = str(tmp_path / "released.pt")
    torch.save({"state_dict": released}, source)
    fresh = pe_dense.create_model(name, out_indices=list(range(spec.depth)), pretrained=source, **mode).eval()
    with torch.no_grad():
        again = fresh(x)
    for a, b in zip(again, got):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", [n for n in SPECS if n not in BIG] + ["PE-Spatial-G14-448"])
def test_non_square_size_released_and_timm_modes(name, monkeypatch):
    spec = get_spec(name)
    H, W = _size(name, True)
    x = torch.randn(1, 3, H, W)

    # timm's own behaviour: bicubic (antialiased) position table, RoPE rescaled to the reference grid
    ref = (_timm_pooled if name in POOLED else _timm_model)(name, dynamic_img_size=True)
    ours = _ours(name, ref, pos_embed="bicubic", rope="interpolate")
    with torch.no_grad():
        for i, (a, b) in enumerate(zip(ours(x), _timm_blocks(ref, x))):
            assert (a - b).abs().max().item() < TOL, f"timm mode, block {i}"

    # the released behaviour: bilinear table (align_corners=False, no antialias), integer-grid RoPE; the same weights
    monkeypatch.setattr(eva, "resample_abs_pos_embed",
                        functools.partial(eva.resample_abs_pos_embed, interpolation="bilinear", antialias=False))
    ref.rope.ref_feat_shape = None  # integer grid (timm.create_model drops None-valued kwargs)
    ours = _ours(name, ref)  # the defaults
    with torch.no_grad():
        got, want = ours(x), _timm_blocks(ref, x)
    for i, (a, b) in enumerate(zip(got, want)):
        assert a.shape == (1, spec.width, H // spec.patch_size, W // spec.patch_size)
        assert (a - b).abs().max().item() < TOL, f"released mode, block {i}"


@pytest.mark.parametrize("name", ["PE-Spatial-T16-512", "PE-Spatial-L14-448", "PE-Spatial-G14-448"])
def test_our_names_are_the_released_names_by_timms_own_converter(name):
    """The released names from outside pe_dense: a pe_dense tower's state dict written as a released file
    (``visual.`` prefix, ``state_dict`` wrapper) goes through timm's own ``checkpoint_filter_fn`` (which reads the
    released PE files), loads strictly into timm's model of the same tower, and computes what pe_dense computes. For T
    (class token, patch 16) and the patch-14 L (class token) and G (none, LayerScale) layouts, at 2 blocks."""
    from pe_dense.factory import model_kwargs
    from pe_dense.modeling import PEViT

    spec = get_spec(name)
    ours = PEViT(**dict(model_kwargs(name, out_indices=[-1]), depth=2)).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(0.02 * torch.randn_like(p))
    released = {"state_dict": {"visual." + k: v for k, v in ours.state_dict().items()}}
    ref = timm.create_model(spec.timm_name, pretrained=False, num_classes=0, depth=2).eval()
    ref.load_state_dict(eva.checkpoint_filter_fn(released, ref), strict=True)
    x = torch.randn(1, 3, spec.img_size, spec.img_size)
    with torch.no_grad():
        want = _timm_blocks(ref, x)[-1]
        got = ours(x)[0]
    assert (got - want).abs().max().item() < TOL

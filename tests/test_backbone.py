"""The ViTDet adaptations, the pyramid, layer decay and the public API's errors."""
import pytest
import torch

import pe_dense
from pe_dense.modeling import SimpleFeaturePyramid
from pe_dense.optim import lr_decay_rate, param_groups


def tiny(**kw):
    kw.setdefault("out_indices", [-1])
    return pe_dense.create_model("PE-Spatial-T16-512", **kw)


def test_list_models_and_unknown_name():
    assert len(pe_dense.list_models()) == 12
    with pytest.raises(KeyError, match="Valid names: PE-Spatial-T16-512"):
        pe_dense.create_model("PE-Spatial-X16-512")
    with pytest.raises(TypeError, match="unknown override.*window_sz"):
        tiny(window_sz=8)


@pytest.mark.parametrize("hw", [(64, 96), (70, 50), (16, 16)])
def test_any_size_pads_to_patch(hw):
    m = tiny(out_indices=[0, 5, -1]).eval()
    out = m(torch.randn(2, 3, *hw))
    assert len(out) == 3
    for o in out:
        assert o.shape == (2, 192, -(-hw[0] // 16), -(-hw[1] // 16))


def test_bad_input_shape():
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        tiny()(torch.randn(1, 1, 64, 64))


def test_window_covering_the_grid_equals_global():
    g = tiny(use_cls_token=False, out_indices=list(range(12))).eval()
    w = tiny(window_size=6, global_blocks=(), out_indices=list(range(12))).eval()
    w.load_state_dict(g.state_dict())
    x = torch.randn(1, 3, 96, 96)  # 6x6 tokens: one window
    with torch.no_grad():
        for a, b in zip(g(x), w(x)):
            assert (a - b).abs().max().item() < 1e-5


def test_windows_pad_when_the_grid_does_not_divide_and_differ_from_global():
    w = tiny(window_size=4, global_blocks=(2, 5, 8, 11)).eval()
    g = tiny(use_cls_token=False).eval()
    g.load_state_dict(w.state_dict())
    x = torch.randn(1, 3, 96, 160)  # 6x10 tokens, windows of 4: padded to 8x12
    with torch.no_grad():
        a, b = w(x)[0], g(x)[0]
    assert a.shape == b.shape == (1, 192, 6, 10)
    assert not torch.allclose(a, b, atol=1e-3)
    assert [blk.window_size for blk in w.transformer.resblocks] == [4, 4, 0, 4, 4, 0, 4, 4, 0, 4, 4, 0]


@pytest.mark.parametrize("patch", [16, 14])
def test_every_block_windowed_equals_the_global_tower_on_each_windows_crop(patch):
    """The known answer for window attention with the tiled table and per-window RoPE: with every block windowed,
    tokens never leave their window, so each window's output is the global tower (no windows, the table resized to
    the window's grid, RoPE of a window-sized image) run on that window's crop of the image, window by window. A
    non-square image of 2 x 3 windows; patch 16 and 14."""
    ws = 4
    kw = dict(patch_size=patch, rope="interpolate", use_cls_token=False)
    windowed = pe_dense.create_model("PE-Spatial-T16-512", window_size=ws, global_blocks=[], pos_embed="tile",
                                     **kw).eval()
    whole = pe_dense.create_model("PE-Spatial-T16-512", pos_embed="interpolate", **kw).eval()
    with torch.no_grad():
        for p in windowed.parameters():
            p.add_(0.05 * torch.randn_like(p))  # norms, biases not trivial
    whole.load_state_dict(windowed.state_dict())
    side = ws * patch
    x = torch.randn(1, 3, 2 * side, 3 * side)
    with torch.no_grad():
        got = windowed(x)[0]
        for i in range(2):
            for j in range(3):
                want = whole(x[..., i * side:(i + 1) * side, j * side:(j + 1) * side])[0]
                part = got[..., i * ws:(i + 1) * ws, j * ws:(j + 1) * ws]
                assert (part - want).abs().max().item() < 1e-4, (i, j)


@pytest.mark.parametrize("patch", [16, 14])
def test_padded_windows_follow_vitdets_own_partition(patch):
    """The known answer with padding: a grid the windows do not divide (6 x 10 tokens, windows of 4, padded to 8 x 12,
    so edge windows attend to zero tokens as ViTDet's do). Each windowed block's output equals the block recomposed
    around Detectron2's own ``window_partition`` / ``window_unpartition`` (ViTDet's, upstream's functions) with the
    RoPE of a window-sized grid; the global blocks in between keep the windows' inputs realistic."""
    utils = pytest.importorskip("detectron2.modeling.backbone.utils")
    ws = 4
    m = pe_dense.create_model("PE-Spatial-T16-512", patch_size=patch, window_size=ws, global_blocks=[2, 5],
                              pos_embed="tile", use_cls_token=False, out_indices=[5]).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))  # biases non-zero: the padded tokens' keys and values are not zero
    h, w = 6, 10
    seen = []
    for i in range(6):
        m.transformer.resblocks[i].register_forward_hook(lambda mod, args, out: seen.append((mod, args, out)))
    with torch.no_grad():
        m(torch.randn(1, 3, h * patch, w * patch))
        rope = m._rope((ws, ws), 0, "cpu")
        windowed = [(blk, args, out) for blk, args, out in seen if blk.window_size]
        assert len(windowed) == 4
        for blk, (x, hw, got_rope), out in windowed:
            assert hw == (h, w) and torch.equal(got_rope, rope)
            B, _, C = x.shape
            y, pad_hw = utils.window_partition(blk.ln_1(x).view(B, h, w, C), ws)
            assert pad_hw == (8, 12)
            y = blk.attn(y.reshape(-1, ws * ws, C), rope).view(-1, ws, ws, C)
            y = utils.window_unpartition(y, ws, pad_hw, (h, w)).reshape(B, -1, C)
            want = x + blk.ls_1(y)
            want = want + blk.ls_2(blk.mlp(blk.ln_2(want)))
            assert (out - want).abs().max().item() < 1e-5


def test_class_token_and_windows_are_exclusive():
    with pytest.raises(ValueError, match="class token cannot go through window attention"):
        tiny(window_size=8, use_cls_token=True)
    with pytest.raises(ValueError, match="has no class token"):
        pe_dense.create_model("PE-Spatial-G14-448", use_cls_token=True, out_indices=[0])


def test_tiled_position_table_per_window():
    m = tiny(window_size=8, pos_embed="tile")
    t = m.position_table(20, 12).reshape(20, 12, -1)
    assert torch.equal(t[:8, :8], t[8:16, :8]) and torch.equal(t[:8, :4], t[:8, 8:12])
    full = m.position_table(32, 32)  # window 8 != table 32: the table is resized to the window, then tiled
    assert full.shape == (1024, 192)


def test_drop_path_and_act_checkpoint_gradients_match():
    x = torch.randn(2, 3, 64, 64)
    a = tiny(window_size=2, global_blocks=(5, 11), act_checkpoint=True).train()
    b = tiny(window_size=2, global_blocks=(5, 11)).train()
    b.load_state_dict(a.state_dict())
    for m in (a, b):
        m(x)[0].square().mean().backward()
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        if p.requires_grad:
            assert p.grad is not None, n
            assert torch.allclose(p.grad, q.grad, atol=1e-6, rtol=1e-4), n


def test_drop_path_is_stochastic_in_training_only():
    m = tiny(drop_path_rate=0.5).train()
    x = torch.randn(4, 3, 32, 32)
    assert not torch.equal(m(x)[0], m(x)[0])
    m.eval()
    assert torch.equal(m(x)[0], m(x)[0])


@pytest.mark.parametrize("frozen", [0, 3, -1])
def test_frozen_blocks_get_no_gradient(frozen):
    m = tiny(frozen_blocks=frozen, drop_path_rate=0.2).train()
    m(torch.randn(1, 3, 32, 32))[0].sum().backward() if frozen != -1 else None
    n = 12 if frozen == -1 else frozen
    for i, blk in enumerate(m.transformer.resblocks):
        for p in blk.parameters():
            assert p.requires_grad == (i >= n)
            if frozen != -1 and i < n:
                assert p.grad is None
        if i < n:
            assert not blk.training  # frozen parts stay in eval mode
    assert m.conv1.weight.requires_grad == (frozen == 0)
    assert m.positional_embedding.requires_grad == (frozen == 0)


def test_blocks_past_the_deepest_tap_are_not_run():
    m = tiny(out_indices=[3])
    assert all(not p.requires_grad for blk in m.transformer.resblocks[4:] for p in blk.parameters())
    m.transformer.resblocks[4].forward = None  # would fail if called
    assert m(torch.randn(1, 3, 32, 32))[0].shape == (1, 192, 2, 2)


@pytest.mark.parametrize("patch", [14, 16])
def test_pyramid_shapes_and_strides(patch):
    vit = tiny(patch_size=patch)
    fpn = SimpleFeaturePyramid(vit, out_channels=64, square_pad=256)
    assert fpn.strides == {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}
    out = fpn(torch.randn(2, 3, 200, 256))
    assert list(out) == ["p2", "p3", "p4", "p5", "p6"]
    for k, s in fpn.strides.items():
        assert out[k].shape == (2, 64, 256 // s, 256 // s), k
    with pytest.raises(ValueError, match="larger than square_pad"):
        fpn(torch.randn(1, 3, 300, 256))


def test_layer_decay_groups():
    depth = 12
    fpn = SimpleFeaturePyramid(tiny(), out_channels=32)
    groups = param_groups(fpn, lr=1e-4, weight_decay=0.1, layer_decay=0.7)
    by_name = {}
    for g in groups:
        for p in g["params"]:
            by_name[id(p)] = g
    named = dict(fpn.named_parameters())
    g = by_name[id(named["net.conv1.weight"])]
    assert g["layer_id"] == 0 and g["lr"] == pytest.approx(1e-4 * 0.7 ** 13) and g["weight_decay"] == 0.1
    g = by_name[id(named["net.positional_embedding"])]
    assert g["layer_id"] == 0 and g["weight_decay"] == 0.0
    g = by_name[id(named["net.transformer.resblocks.4.attn.in_proj_weight"])]
    assert g["layer_id"] == 5 and g["lr"] == pytest.approx(1e-4 * 0.7 ** 8) and g["weight_decay"] == 0.1
    assert by_name[id(named["net.transformer.resblocks.4.attn.in_proj_bias"])]["weight_decay"] == 0.0
    assert by_name[id(named["net.transformer.resblocks.4.ln_1.weight"])]["weight_decay"] == 0.0
    g = by_name[id(named["stages.0.0.weight"])]
    assert g["layer_id"] == depth + 1 and g["lr"] == pytest.approx(1e-4)
    assert sum(len(g["params"]) for g in groups) == sum(p.requires_grad for p in fpn.parameters())
    # Detectron2-style lr_factor_func, as the released recipe's get_vit_lr_decay_rate_pev1
    assert lr_decay_rate("backbone.fpn.net.conv1.weight", 0.9, 50) == pytest.approx(0.9 ** 51)
    assert lr_decay_rate("backbone.fpn.net.transformer.resblocks.49.mlp.c_fc.weight", 0.9, 50) == pytest.approx(0.9)
    assert lr_decay_rate("roi_heads.box_head.fc1.weight", 0.9, 50) == 1.0
    # heads whose layers are named like the tower's keep factor 1 (the released rule: layer ids under the tower only)
    for head in ("roi_heads.box_head.conv1.weight", "roi_heads.box_heads.2.conv1.weight",
                 "proposal_generator.rpn_head.conv.conv1.weight", "backbone.fpn.stages.0.ln_pre.weight"):
        assert lr_decay_rate(head, 0.9, 50) == 1.0, head


def test_layer_decay_ignores_head_layers_named_like_the_tower():
    """A head with its own ``conv1`` / ``ln_pre`` / ``transformer.resblocks`` keeps lr factor 1."""
    from torch import nn

    model = nn.Module()
    model.backbone = tiny()
    model.head = nn.Module()
    model.head.conv1 = nn.Conv2d(4, 4, 1)
    model.head.transformer = nn.Module()
    model.head.transformer.resblocks = nn.ModuleList([nn.Linear(2, 2)])
    groups = param_groups(model, lr=1.0, weight_decay=0.1, layer_decay=0.5)
    factor = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    for n, p in model.named_parameters():
        if n.startswith("head."):
            assert factor[id(p)] == 1.0, n
    assert factor[id(model.backbone.conv1.weight)] == 0.5 ** 13
    with pytest.raises(ValueError, match="exactly one PE tower"):
        param_groups(nn.Linear(2, 2), lr=1.0, weight_decay=0.0)


def test_compiles_without_graph_breaks():
    m = tiny(window_size=2, global_blocks=(5, 11), out_indices=[3, 11]).eval()
    x = torch.randn(1, 3, 64, 96)
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")  # fullgraph: a graph break is an error
    with torch.no_grad():
        for a, b in zip(compiled(x), m(x)):
            assert torch.allclose(a, b, atol=1e-5)

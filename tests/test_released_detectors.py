"""The released PE detectors (perception_models' ``SimpleFeaturePyramid(net=PEv1_det(...))`` Mask R-CNNs, the hub's
``facebook/PE-Detection``) load whole into this project's configs, or the run stops naming the keys; a detector of
ours converts to their layout and back exactly; no checkpoint loads partly in silence (Detectron2 and MMSeg).

The known answer comes from the released code: ``tests/data/released_detectors.json`` lists, once, the key names and
shapes of the released models' state dicts (its ``_source`` says how) and rows of the RoPE buffers the released code
computed. The name mapping checked here is written out independently of ``pe_dense.detector_checkpoint``. Parity of
the outputs with the released code itself was measured once (projects/detection/README.md).
"""
import json
import logging
import os
import re

import pytest
import torch

d2 = pytest.importorskip("detectron2")

from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.config import LazyConfig, instantiate  # noqa: E402

import pe_dense.detectron2  # noqa: E402,F401  (the hardened checkpointer, as every config imports it)
from pe_dense.checkpoint import CheckpointError  # noqa: E402
from pe_dense.detector_checkpoint import fit_detector, released_rope  # noqa: E402
from pe_dense.detectron2.convert import build_on_meta  # noqa: E402
from pe_dense.detectron2.train import SafeCheckpointer, init_weights  # noqa: E402
from pe_dense.specs import SPECS, PESpec  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..")
DATA = json.load(open(os.path.join(os.path.dirname(__file__), "data", "released_detectors.json")))
LAYOUTS = DATA["layouts"]
G_CONFIGS = {
    "mask_rcnn_PEspatial_G_coco36ep": "COCO/mask_rcnn_pe_spatial_g_36ep.py",
    "mask_rcnn_PEcore_G_coco75ep": "COCO/mask_rcnn_pe_core_g_75ep.py",
    "mask_rcnn_PEspatial_G_lvis75ep": "LVIS/mask_rcnn_pe_spatial_g_75ep.py",
    "mask_rcnn_PEcore_G_lvis75ep": "LVIS/mask_rcnn_pe_core_g_75ep.py",
}
# the tower of the "mini_g" layout: the G recipe's layout at width 384, depth 8 (see the data's _source)
MINI = PESpec(name="PE-MiniG-test", family="spatial", patch_size=14, img_size=448, width=384, depth=8, heads=4,
              mlp_dim=2240, cls_token=False, ls_init=0.1, timm_name="")
MINI_OPTS = [f"model.backbone.model_name={MINI.name}", "model.backbone.vit.global_blocks=[1,3,5,7]"]
G_CFG = os.path.join(ROOT, "configs", "detectron2", "COCO", "mask_rcnn_pe_spatial_g_36ep.py")


CONV_NORM = {0: ("4", "5"), 1: ("1", "2"), 2: ("0", "1"), 3: ("1", "2")}  # per stage: the (conv, norm) layers


def released_name(ours: str) -> str:
    """Our key -> the released one, written out here: the tower moves from backbone.fpn.net. to backbone.net.; pyramid
    stage I (scale factors 4, 2, 1, 0.5: strides 4..32) is Detectron2's simfp_{I+2}, and in its last two layers (a
    conv with its norm) our .J.0. is .J. and our .J.1. is .J.norm."""
    if ours.startswith("backbone.fpn.net."):
        return "backbone.net." + ours[len("backbone.fpn.net."):]
    m = re.fullmatch(r"backbone\.fpn\.stages\.(\d)\.(\d)\.(.+)", ours)
    if not m:
        return ours
    i, j, rest = int(m.group(1)), m.group(2), m.group(3)
    if j in CONV_NORM[i]:
        sub, _, leaf = rest.partition(".")
        rest = leaf if sub == "0" else "norm." + leaf
    return f"backbone.simfp_{i + 2}.{j}.{rest}"


def released_state(layout: str, seed: int = 0, rope_n=(32, 64), head_dim: int = 96):
    """A state dict of the released layout ``layout`` with seeded random weights and the RoPE buffers the released code
    stores (the windows' and the grid's tables, shared by the blocks as in the released model)."""
    g = torch.Generator().manual_seed(seed)
    tables = {n: released_rope(head_dim, 32, n) for n in rope_n}
    sd = {}
    for k, shape in LAYOUTS[layout].items():
        if ".freqs_" in k:
            sd[k] = tables[int(round(shape[0] ** 0.5))][0 if k.endswith("cos") else 1]
        else:
            sd[k] = torch.randn(shape, generator=g)
    return sd


def save_d2(sd, path):
    torch.save({"model": sd, "iteration": 0}, path)  # what Detectron2's Checkpointer.save writes
    return str(path)


@pytest.fixture
def mini(monkeypatch):
    monkeypatch.setitem(SPECS, MINI.name, MINI)
    cfg = LazyConfig.apply_overrides(LazyConfig.load(G_CFG), MINI_OPTS)
    return cfg


def test_rope_tables_equal_the_released_codes():
    """released_rope against rows of the buffers the released VisionRotaryEmbeddingFast computed (positions
    i * 32 / n + 1): windows of 32 and the 64 x 64 grid of a 1024 px image, every value within 2e-7 (one float32
    step: torch's vectorized cos / sin differ by a unit in the last place between CPU kernels, AVX2 and AVX512, so
    the same code gives values a step apart on two machines; the rows were recorded on one of them)."""
    for key, n in (("rope_win", 32), ("rope_glb", 64)):
        cos, sin = released_rope(96, 32, n)
        for part, ours in (("freqs_cos", cos), ("freqs_sin", sin)):
            for row, values in DATA["rope_samples"][f"{key}.{part}"].items():
                want = torch.tensor(values, dtype=torch.float32)
                assert torch.allclose(ours[int(row)], want, rtol=0, atol=2e-7), (key, part, row)


@pytest.mark.parametrize("layout", sorted(G_CONFIGS))
def test_every_released_g_detector_maps_whole_onto_its_config(layout):
    """Each released G detector's keys and shapes (meta tensors: no 1.8B weights in memory) map onto the matching
    config's model: every tensor of the model is provided, every tensor of the file used or a checked RoPE buffer."""
    cfg, model, backbone = build_on_meta(os.path.join(ROOT, "configs", "detectron2", G_CONFIGS[layout]))
    sd = {k: torch.empty(s, device="meta") for k, s in LAYOUTS[layout].items()}
    tables = {n: released_rope(96, 32, n) for n in (32, 64)}
    rope = {k: tables[int(round(s[0] ** 0.5))][0 if k.endswith("cos") else 1]
            for k, s in LAYOUTS[layout].items() if ".freqs_" in k}
    sd.update(rope)
    out, notes = fit_detector(sd, model.state_dict(), backbone.fpn, 1024, whole=True)
    target = model.state_dict()
    assert set(out) == set(target)
    assert all(tuple(out[k].shape) == tuple(v.shape) for k, v in target.items())
    assert {released_name(k) for k in target} | set(rope) == set(LAYOUTS[layout])  # every file tensor placed
    assert any("104 RoPE buffers" in n for n in notes)  # 50 blocks + rope_win + rope_glb, cos and sin


@pytest.fixture
def mini_file(tmp_path):
    return save_d2(released_state("mini_g"), tmp_path / "released_mini_g.pth")


def test_a_released_detector_loads_whole_through_the_tools_and_detectron2s_checkpointer(mini, mini_file):
    """As tools/train_net.py --eval-only / pe-dense predict (init_weights, whole) and Detectron2's own tools
    (DetectionCheckpointer.load) load it: every tensor of our model equals the file's, by the released names."""
    file = torch.load(mini_file, weights_only=True)["model"]
    for load in (lambda m: init_weights(m, SafeCheckpointer(m), mini_file, whole=True),
                 lambda m: DetectionCheckpointer(m).load(mini_file)):
        model = instantiate(mini.model)
        load(model)
        for k, v in model.state_dict().items():
            want = file[released_name(k)]
            assert torch.equal(v, want.reshape(v.shape)), k
            if k.endswith("positional_embedding"):
                assert want.shape == (1, 1024, 384) and v.shape == (1024, 384)


def test_a_file_missing_one_blocks_tensors_is_refused(mini, tmp_path):
    sd = released_state("mini_g")
    for k in [k for k in sd if ".resblocks.3.mlp." in k]:
        del sd[k]
    path = save_d2(sd, tmp_path / "partial.pth")
    for load in (lambda m: init_weights(m, SafeCheckpointer(m), path),
                 lambda m: DetectionCheckpointer(m).load(path)):
        with pytest.raises(CheckpointError, match=r"missing \(4\): backbone\.fpn\.net\.transformer\.resblocks\.3"
                                                  r"\.mlp\.c_fc\.weight"):
            load(instantiate(mini.model))


def test_rope_tables_of_another_layout_are_refused_naming_it(mini, mini_file):
    """A config that runs another image size or other global blocks than the file's RoPE tables were made for."""
    other = LazyConfig.apply_overrides(LazyConfig.load(G_CFG), MINI_OPTS + ["model.backbone.square_pad=768"])
    with pytest.raises(CheckpointError, match=r"made for another layout .*images of 768 px\)\. The file's: images of "
                                              r"1024 px \(64x64 tokens\)"):
        DetectionCheckpointer(instantiate(other.model)).load(mini_file)
    other = LazyConfig.apply_overrides(LazyConfig.load(G_CFG), MINI_OPTS[:1] + [
        "model.backbone.vit.global_blocks=[1,3,5]"])
    with pytest.raises(CheckpointError, match=r"global attention in blocks \[1, 3, 5, 7\]"):
        DetectionCheckpointer(instantiate(other.model)).load(mini_file)


def test_heads_of_another_dataset_are_a_deliberate_partial_load_that_says_so(mini, mini_file, caplog):
    cfg = LazyConfig.apply_overrides(LazyConfig.load(G_CFG), MINI_OPTS + ["model.roi_heads.num_classes=3"])
    model = instantiate(cfg.model)
    with caplog.at_level(logging.WARNING, logger="detectron2"):
        DetectionCheckpointer(model).load(mini_file)  # training from a detector: heads re-initialized
    said = " ".join(r.getMessage() for r in caplog.records if "[pe_dense]" in r.getMessage())
    assert "partial load: 6 tensor(s) of the model keep their initialization" in said  # class-specific layers
    assert "roi_heads.box_predictor.cls_score.weight" in said
    with pytest.raises(CheckpointError, match=r"shape mismatch \(6\): roi_heads\.box_predictor\.cls_score\.weight"):
        init_weights(instantiate(cfg.model), SafeCheckpointer(model), mini_file, whole=True)  # evaluation: never


def test_other_detectors_and_tower_weights_are_refused(mini, tmp_path):
    model = instantiate(mini.model)
    vitdet = {"backbone.net.blocks.0.attn.qkv.weight": torch.zeros(3, 3), "roi_heads.x": torch.zeros(1)}
    with pytest.raises(CheckpointError, match=r"Detectron2's own ViTDet"):
        DetectionCheckpointer(model).load(save_d2(vitdet, tmp_path / "vitdet.pth"))
    ours = {k: v for k, v in model.state_dict().items() if not k.startswith("backbone.fpn.stages.0.")}
    with pytest.raises(CheckpointError, match=r"missing \(\d+\): backbone\.fpn\.stages\.0\.0\.weight"):
        DetectionCheckpointer(model).load(save_d2(ours, tmp_path / "no_p2.pth"))  # a pyramid in part
    tower = tmp_path / "tower.pt"
    torch.save({k[len("backbone.fpn.net."):]: v for k, v in model.state_dict().items()
                if k.startswith("backbone.fpn.net.")}, tower)
    with pytest.raises(CheckpointError, match=r"holds PE tower weights: evaluation and prediction need a trained "
                                              r"detector"):
        init_weights(model, SafeCheckpointer(model), str(tower), whole=True)
    with pytest.raises(CheckpointError, match=r"names the released PE tower weights"):
        init_weights(model, SafeCheckpointer(model), "PE-Spatial-G14-448", whole=True)  # refused before a download


def test_convert_both_ways_is_exact(mini, mini_file, tmp_path, capsys):
    """pe-dense convert: released -> ours -> released gives the file back bit for bit (RoPE buffers included), and
    ours -> released -> ours gives ours back."""
    from pe_dense.cli import main as cli

    ours, back = str(tmp_path / "ours.pth"), str(tmp_path / "back.pth")
    cli(["convert", mini_file, ours, "--config", G_CFG, "--cfg-options", *MINI_OPTS])
    cli(["convert", ours, back, "--config", G_CFG, "--to", "detectron2-released", "--cfg-options", *MINI_OPTS])
    out = capsys.readouterr().out
    assert "PEv1_det(\"img_size\": 1024" in out and "\"window_block_indexes\": [0, 2, 4, 6]" in out
    src, got = (torch.load(p, weights_only=True)["model"] for p in (mini_file, back))
    assert set(src) == set(got) and all(torch.equal(src[k], got[k]) for k in src)
    again = str(tmp_path / "again.pth")
    cli(["convert", back, again, "--config", G_CFG, "--cfg-options", *MINI_OPTS])
    a, b = (torch.load(p, weights_only=True)["model"] for p in (ours, again))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert all(k.startswith(("backbone.fpn.", "proposal_generator.", "roi_heads.")) for k in a)


def test_convert_to_the_released_layout_refuses_what_the_released_code_cannot_compute(tmp_path):
    """Windows of 16 over a 32 x 32 table (our T..L recipes): the released PEv1_det tiles the table at its own
    period, ours per window: refused, saying so, and nothing written."""
    from pe_dense.cli import main as cli

    cfg = os.path.join(ROOT, "configs", "detectron2", "shapes", "mask_rcnn_pe_spatial_t_shapes.py")
    model = instantiate(LazyConfig.load(cfg).model)
    src = save_d2(model.state_dict(), tmp_path / "t.pth")
    dst = tmp_path / "t_released.pth"
    with pytest.raises(SystemExit) as e:
        cli(["convert", src, str(dst), "--config", cfg, "--to", "detectron2-released"])
    assert e.value.code == 2 and not dst.exists()


def test_predict_refuses_a_checkpoint_that_is_not_the_whole_detector(tmp_path, capsys):
    from PIL import Image

    from pe_dense.cli import main as cli

    cfg = os.path.join(ROOT, "configs", "detectron2", "shapes", "mask_rcnn_pe_spatial_t_shapes.py")
    model = instantiate(LazyConfig.load(cfg).model)
    sd = {k: v for k, v in model.state_dict().items() if not k.startswith("roi_heads.mask_head.")}
    path = save_d2(sd, tmp_path / "no_mask_head.pth")
    Image.new("RGB", (64, 48)).save(tmp_path / "a.png")
    with pytest.raises(SystemExit) as e:
        cli(["predict", cfg, path, str(tmp_path / "a.png"), "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert e.value.code == 2
    assert re.search(r"missing \(\d+\): roi_heads\.mask_head\.", capsys.readouterr().err)


def test_export_takes_the_tower_and_pyramid_of_a_released_detector(mini, mini_file):
    """pe-dense export --pyramid --checkpoint RELEASED.pth: the tower and the pyramid of the file, by the released
    names (the heads are not exported)."""
    import pe_dense
    from pe_dense.export import load_for_export
    from pe_dense.modeling import SimpleFeaturePyramid

    model = SimpleFeaturePyramid(pe_dense.create_model(MINI.name, patch_size=16, window_size=32,
                                                       global_blocks=[1, 3, 5, 7], pos_embed="tile"))
    assert load_for_export(model, mini_file, pyramid=True) == f"from {mini_file}"
    file = torch.load(mini_file, weights_only=True)["model"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, file[released_name("backbone.fpn." + k)].reshape(v.shape)), k

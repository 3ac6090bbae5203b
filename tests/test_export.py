"""ONNX export: one file for every image size, checked by onnxruntime against PyTorch (fp32, atol 1e-4)."""
import os

import numpy as np
import pytest
import torch

import pe_dense
from pe_dense.cli import main
from pe_dense.export import ExportError, check_onnx, export_onnx
from pe_dense.modeling import SimpleFeaturePyramid

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

ATOL = 1e-4
VITDET = dict(window_size=14, global_blocks=[2, 5, 8, 11], pos_embed="tile", rope="interpolate")
# sizes other than the traced one (224x240): multiples of the patch, neither of the patch nor of the window
# (14 tokens = 224 px), one window per side, one patch; batch 2 at one of them
SIZES = [(256, 320), (200, 333), (64, 80), (16, 16)]


def _perturb(model):
    """Random init leaves LayerScale/biases at constants; spread them so that no term can hide."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    return model


# the graph is the same for every width: T's windowed and global towers, and PE-Core's with its class token running
# and returned (B and a windowed PE-Core, the same graphs at other widths and tables, were dropped for time)
@pytest.mark.parametrize("name,setting", [
    ("PE-Spatial-T16-512", "windowed"), ("PE-Spatial-T16-512", "global"), ("PE-Core-T16-384", "global")])
@pytest.mark.slow
def test_dynamic_export_matches_pytorch_at_other_sizes(tmp_path, name, setting):
    depth = pe_dense.get_spec(name).depth
    kw = dict(VITDET) if setting == "windowed" else {}
    if name.startswith("PE-Core") and setting == "global":
        kw["return_class_token"] = True  # the class token runs and is an output too
    model = _perturb(pe_dense.create_model(name, out_indices=[depth // 2 - 1, depth - 1], **kw)).eval()
    path = str(tmp_path / "m.onnx")
    info = export_onnx(model, path, (224, 224), dynamic=True)
    assert info["inputs"][0][1] == ["batch", 3, "height", "width"]
    rows = check_onnx(path, model, SIZES)
    assert max(r["max_abs_diff"] for r in rows) < ATOL, rows
    got = {r["size"]: r["shapes"] for r in rows}
    assert got[(200, 333)][f"block{depth - 1}"] == (1, model.width, 13, 21)
    if kw.get("return_class_token"):
        assert got[(64, 80)][f"block{depth - 1}_class_token"] == (1, model.width)
    assert max(r["max_abs_diff"] for r in check_onnx(path, model, [(96, 130)], batch=2)) < ATOL
    assert os.listdir(tmp_path) == ["m.onnx"]  # no temporary left


@pytest.mark.slow
def test_cli_exports_released_weights_and_checks_them(tmp_path, capsys):
    """``pe-dense export`` with a checkpoint in the released format: the file computes the loaded tower, its own
    check and latency are printed."""
    src = _perturb(pe_dense.create_model("PE-Spatial-T16-512"))
    ckpt = tmp_path / "released.pt"
    torch.save({"state_dict": {"visual." + k: v for k, v in src.state_dict().items()}}, ckpt)
    out = tmp_path / "t.onnx"
    main(["export", "PE-Spatial-T16-512", str(out), "--checkpoint", str(ckpt), "--dynamic", "--size", "192",
          "--blocks", "3,11", "--rounds", "2"])
    text = capsys.readouterr().out
    assert "input image ['batch', 3, 'height', 'width'], outputs block3, block11" in text
    assert text.count("onnxruntime vs PyTorch at") == 3 and "latency at 192x192" in text
    diffs = [float(line.split("max |diff| ")[1]) for line in text.splitlines() if "max |diff|" in line]
    assert max(diffs) < ATOL
    ref = pe_dense.create_model("PE-Spatial-T16-512", out_indices=[3, 11]).eval()
    pe_dense.load_checkpoint(ref, str(ckpt))
    x = torch.randn(1, 3, 150, 230)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})
    with torch.no_grad():
        want = ref(x)
    for o, w in zip(got, want):
        np.testing.assert_allclose(o, w.numpy(), atol=ATOL)


@pytest.mark.slow
def test_cli_exports_tower_and_pyramid_from_a_detectron2_checkpoint(tmp_path, capsys):
    """``--pyramid`` with a Detectron2 checkpoint of a pe_dense config: tower and pyramid weights both come from
    it (``backbone.fpn.*``), the heads' keys are left out; outputs p2..p6 at any size."""
    tower = pe_dense.create_model("PE-Spatial-T16-512", **VITDET)
    fpn = _perturb(SimpleFeaturePyramid(tower)).eval()
    sd = {"backbone.fpn." + k: v for k, v in fpn.state_dict().items()}
    sd["roi_heads.box_predictor.cls_score.weight"] = torch.zeros(3, 4)
    ckpt = tmp_path / "model_final.pth"
    torch.save({"model": sd, "iteration": 10}, ckpt)
    out = tmp_path / "fpn.onnx"
    main(["export", "PE-Spatial-T16-512", str(out), "--checkpoint", str(ckpt), "--pyramid", "--dynamic",
          "--size", "256", "--window-size", "14", "--global-blocks", "2,5,8,11", "--pos-embed", "tile",
          "--rope", "interpolate", "--check-sizes", "200x333,64x64", "--rounds", "1"])
    text = capsys.readouterr().out
    assert "outputs p2, p3, p4, p5, p6" in text and f"pyramid: from {ckpt}" in text
    x = torch.randn(1, 3, 208, 300)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})
    with torch.no_grad():
        want = fpn(x)
    assert [o.shape[-2:] for o in got] == [(52, 76), (26, 38), (13, 19), (6, 9), (3, 5)]  # max pools floor
    for o, w in zip(got, want.values()):
        np.testing.assert_allclose(o, w.numpy(), atol=ATOL)


def test_fixed_size_export(tmp_path):
    model = pe_dense.create_model("PE-Spatial-T16-512", out_indices=[1]).eval()
    path = str(tmp_path / "fixed.onnx")
    info = export_onnx(model, path, (128, 96), dynamic=False)
    assert info["inputs"][0][1] == [1, 3, 128, 96]
    assert check_onnx(path, model, [(128, 96)])[0]["max_abs_diff"] < ATOL


def test_what_cannot_be_exported_is_refused(tmp_path, capsys):
    model = pe_dense.create_model("PE-Spatial-T16-512", out_indices=[0])
    with pytest.raises(ExportError, match="opset 18 and newer"):
        export_onnx(model, str(tmp_path / "a.onnx"), opset=17)
    with pytest.raises(ExportError, match="square_pad"):
        export_onnx(SimpleFeaturePyramid(model, square_pad=256), str(tmp_path / "a.onnx"), (128, 128))
    with pytest.raises(ExportError, match="float32"):
        export_onnx(pe_dense.create_model("PE-Spatial-T16-512", out_indices=[0]).bfloat16(),
                    str(tmp_path / "a.onnx"), (128, 128))
    with pytest.raises(ExportError, match="smaller than one patch"):
        export_onnx(model, str(tmp_path / "a.onnx"), (8, 64))
    with pytest.raises(SystemExit) as e:
        main(["export", "PE-Spatial-T16-512", str(tmp_path / "a.pt")])
    assert e.value.code == 2 and "give it a .onnx name" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["export", "PE-Spatial-T16-512", str(tmp_path / "a.onnx"), "--opset", "17"])
    assert e.value.code == 2 and "use --opset 18 or higher" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []

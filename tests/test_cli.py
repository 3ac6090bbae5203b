"""The pe-dense command line: list, info, features, convert, and its errors."""
import argparse
import os

import pytest
import torch
from PIL import Image

import pe_dense
from pe_dense.cli import main


def test_list_and_info(capsys):
    main(["list"])
    out = capsys.readouterr().out
    assert all(n in out for n in pe_dense.list_models()) and "1851.9" in out
    main(["info", "PE-Spatial-T16-512", "--size", "256", "--window-size", "8", "--global-blocks", "5,11"])
    out = capsys.readouterr().out
    assert "parameters: 5.68 M" in out and "FLOPs at 256x256" in out and "window=8" in out


def test_info_flops_match_the_formula(capsys):
    # per block: 4ND^2 (qkv + out) + 2NDH (MLP) + 2N^2D (attention) multiply-adds; plus the patch embedding
    main(["info", "PE-Spatial-T16-512", "--size", "512"])
    got = float(capsys.readouterr().out.split("FLOPs at 512x512: ")[1].split(" G")[0])
    N, D, H, L = 1 + 32 * 32, 192, 768, 12
    want = (L * (4 * N * D * D + 2 * N * D * H + 2 * N * N * D) + 32 * 32 * 3 * 16 * 16 * D) / 1e9
    assert got == pytest.approx(want, rel=0.01)


def test_features_writes_a_picture(tmp_path, capsys):
    out = tmp_path / "pca.png"
    main(["features", "builtin:shapes", "--size", "128", "--block", "3", "--out", str(out)])
    img = Image.open(out)
    assert img.size == (2 * 176, 128) and img.mode == "RGB"  # image | PCA, 128 x 170 rounded to the patch
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]


def test_convert_released_14_to_16_tiled(tmp_path, capsys):
    # a file in the layout of the released L and G ones (patch 14, a 32 x 32 table) at T's width and depth
    src = pe_dense.create_model("PE-Spatial-T16-512", patch_size=14, img_size=448)
    path = tmp_path / "released.pt"
    torch.save({"state_dict": {"visual." + k: v for k, v in src.state_dict().items()}}, path)
    dst = tmp_path / "pe16.safetensors"
    main(["convert", str(path), str(dst), "--model", "PE-Spatial-T16-512", "--patch-size", "16",
          "--pos-embed", "tile"])
    assert "patch 16, position table 32x32 (tile)" in capsys.readouterr().out
    m = pe_dense.create_model("PE-Spatial-T16-512", patch_size=16, pretrained=str(dst), out_indices=[0])
    assert torch.equal(m.positional_embedding, src.positional_embedding)
    want = torch.nn.functional.interpolate(src.conv1.weight, size=(16, 16), mode="bicubic", align_corners=False)
    assert torch.equal(m.conv1.weight, want)


def test_cli_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["info", "PE-Nope"])
    assert e.value.code == 2 and "Valid names" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["features", "/no/such.jpg"])
    assert "Image not found: /no/such.jpg" in capsys.readouterr().err


def test_a_bug_keeps_its_traceback_and_bad_input_is_one_line(monkeypatch, capsys):
    """Only the package's errors (PEDenseError) and missing files become one-line messages; anything else is a bug
    and propagates with its traceback instead of being passed off as bad input."""
    import pe_dense.analysis

    def broken(*a, **k):
        raise KeyError("a bug, not bad input")

    monkeypatch.setattr(pe_dense.analysis, "print_info", broken)
    with pytest.raises(KeyError, match="a bug"):
        main(["info", "PE-Spatial-T16-512"])
    with pytest.raises(SystemExit) as e:
        main(["features", "--out", "x.gif"])
    assert e.value.code == 2 and "give --out a .png" in capsys.readouterr().err


def test_every_command_is_there_and_main_returns_nothing(capsys):
    """Each command is registered (none hidden behind an optional import); main returns None (the console script
    exits with its value)."""
    from pe_dense.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {"list", "info", "features", "convert", "export", "predict", "probe", "demo", "track",
                                "classify", "segment", "text-projection"}
    assert main(["list"]) is None

"""Features for any image (pe_dense.features, `pe-dense features --save`): folders to disk with their metadata and
reruns that skip, tiles that equal the whole forward when one tile covers the image and blend without seams,
image-guided upsampling that keeps edges (a known answer), and the errors."""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import pe_dense
from pe_dense.cli import main as cli
from pe_dense.data.images import normalize, shapes_image
from pe_dense.errors import PEDenseError
from pe_dense.features import (
    extract_features,
    guided_upsample,
    read_features,
    tiled_features,
    upsample,
)
from pe_dense.modeling.windows import border_step_ratio, window_borders


@pytest.fixture(scope="module")
def tower():
    torch.manual_seed(0)
    return pe_dense.create_model("PE-Spatial-T16-512", out_indices=[5, 11]).eval()


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for i, hw in enumerate([(96, 128), (96, 128), (80, 112)]):
        shapes_image(hw, seed=i).save(d / f"im{i}.png")
    (d / "notes.txt").write_text("not an image")
    return d


def test_a_folder_to_disk_with_metadata_then_a_rerun_skips(folder, tmp_path, tower, capsys):
    out = tmp_path / "feats"
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    r = extract_features([str(folder)], blocks=[5, 11], size=None, save=str(out), tower=tower, progress=False)
    assert r["written"] == 3 and [u[0] for u in r["unreadable"]] == [str(folder / "broken.jpg")]
    assert "1 of 4 image(s) unreadable" in capsys.readouterr().out
    t, meta = read_features(str(out / "im2.safetensors"))
    assert set(t) == {"features.block5", "features.block11"} and t["features.block11"].shape == (192, 5, 7)
    assert (meta["stride"], meta["input_size"], meta["blocks"], meta["dtype"]) == ("16", "80x112", "5,11", "float16")
    assert meta["weights"].startswith("weights in memory (sha1") and meta["source"] == str(folder / "im2.png")
    x = normalize(Image.open(folder / "im2.png").convert("RGB"))[None]  # equals a direct forward
    with torch.no_grad():
        want = tower(x)[1][0]
    assert torch.allclose(t["features.block11"], want, atol=2e-3 * want.abs().max())  # fp16 storage
    again = extract_features([str(folder / "*.png")], blocks=[5, 11], size=None, save=str(out), tower=tower,
                             progress=False)
    assert (again["written"], again["skipped"]) == (0, 3)
    other = extract_features([str(folder / "im0.png")], blocks=[11], size=None, save=str(out), tower=tower,
                             progress=False)  # other settings: redone, and its file holds only that tap
    assert other["written"] == 1 and set(read_features(str(out / "im0.safetensors"))[0]) == {"features"}
    assert not [f for f in os.listdir(out) if f.startswith(".")]  # nothing half-written


def test_the_python_function_returns_tensors_batched_as_one_by_one(folder, tower):
    many = extract_features([str(folder / f"im{i}.png") for i in range(3)], blocks=[11], size=64, tower=tower,
                            batch_size=2, progress=False)
    one = [extract_features([str(folder / f"im{i}.png")], blocks=[11], size=64, tower=tower, progress=False)[0]
           for i in range(3)]
    assert [r.source for r in many] == [r.source for r in one]
    for a, b in zip(many, one):
        assert a.input_size == b.input_size and torch.allclose(a.features[11], b.features[11], atol=1e-4)


def test_one_tile_covering_the_image_is_the_whole_forward(tower):
    img = shapes_image((200, 264))  # not multiples of the patch: padded as the tower pads
    tiled = tiled_features(tower, img, tile=272, overlap=0)
    with torch.no_grad():
        whole = tower(normalize(img)[None])
    for t, w in zip(tiled, whole):
        assert t.shape == w[0].shape == (192, 13, 17) and torch.equal(t, w[0])


def test_blended_tiles_leave_no_seam(tower):
    """Neighbouring positions across tile borders change no more than inside tiles (ratio <= 1.2), blended; also
    with a windowed (ViTDet) tower."""
    img = shapes_image((384, 512))
    by, bx = window_borders(24, 8, 4), window_borders(32, 8, 4)  # in cells: tiles of 8 every 4
    blended = border_step_ratio(tiled_features(tower, img, tile=128, overlap=64)[1], by, bx)
    mean = border_step_ratio(tiled_features(tower, img, tile=128, overlap=64, blend="mean")[1], by, bx)
    assert blended <= 1.2 and blended < mean
    vitdet = pe_dense.create_model("PE-Spatial-T16-512", window_size=3, global_blocks=[11], out_indices=[11]).eval()
    assert border_step_ratio(tiled_features(vitdet, img, tile=128, overlap=64)[0], by, bx) <= 1.2


def _two_regions(h=64, w=96, edge=40):
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :edge] = (51, 77, 102)
    img[:, edge:] = (204, 179, 153)
    return img


def test_guided_upsampling_keeps_the_edge_that_bilinear_smears():
    """A tower whose features are the patch's mean colour (features follow the patch content); the edge at x = 40
    cuts the third patch: guided features take each region's colour on both sides of the edge (to within 2 px),
    bilinear ones mix the regions over a patch."""
    img = _two_regions()
    x = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    feat = F.avg_pool2d(x[None], 16)[0]  # (3, 4, 6)
    left, right = x[:, 0, 0], x[:, 0, -1]
    guided = guided_upsample(feat, img, 16, stride=1)
    bil = upsample(feat, img, 16, 1, "bilinear")
    assert guided.shape == bil.shape == (3, 64, 96)
    cols = torch.arange(96)
    far = (cols - 39.5).abs() >= 2
    want = torch.where(cols[None, None, :] < 40, left[:, None, None], right[:, None, None]).expand(3, 64, 96)
    assert (guided - want)[:, :, far].abs().max() < 0.02
    assert (bil - want)[:, :, far].abs().max() > 0.1  # a patch of smearing
    coarse = guided_upsample(feat, img, 16, stride=4, chunk_rows=3)  # chunks and strides agree
    assert coarse.shape == (3, 16, 24) and (coarse - want[:, 2::4, 2::4])[:, :, (cols[2::4] - 39.5).abs() >= 4].abs(
    ).max() < 0.02


def test_cli_writes_features_and_refuses_bad_settings(tmp_path, folder, capsys):
    cli(["features", str(folder / "im0.png"), "--save", str(tmp_path / "o"), "--size", "64", "--upsample",
         "guided", "--stride", "8", "--pca", "--fp32"])
    t, meta = read_features(str(tmp_path / "o" / "im0.safetensors"))
    assert t["features"].shape == (192, 8, 11) and meta["stride"] == "8" and meta["dtype"] == "float32"
    assert (tmp_path / "o" / "im0_pca.png").is_file()
    bad = [([str(folder), "--save", str(tmp_path / "x"), "--tile", "100"], "multiples of the patch"),
           ([str(folder / "im0.png"), str(folder / "im1.png")], "give --save DIR"),
           ([str(tmp_path / "nope")], "not found"),
           ([str(folder / "im0.png"), "--save", str(tmp_path / "y"), "--stride", "4"], "needs --upsample")]
    for argv, msg in bad:
        with pytest.raises(SystemExit):
            cli(["features"] + argv)
        assert msg in capsys.readouterr().err
    assert not (tmp_path / "x").exists() or not os.listdir(tmp_path / "x")
    with pytest.raises(PEDenseError, match="overlap < tile"):
        tiled_features(pe_dense.create_model("PE-Spatial-T16-512"), shapes_image((64, 64)), 32, 32)


def test_a_local_tower_gives_tiled_features_equal_to_the_whole_forward(tmp_path):
    """The known answer for tiles: in a tower whose tokens never mix (every block windowed with windows of one
    token, the position table tiled at period one), a patch's features depend on that patch's pixels alone, so
    tiles (overlapping, blended by ramps or averaged) give the whole forward's features, on an image whose sides
    are multiples of neither the patch nor the tile step, through ``extract_features(tile=...)`` and through the
    CLI. A tile placed one cell off, or cells blended with another tile's, would break it."""
    img = tmp_path / "a.png"
    shapes_image((200, 333)).save(img)
    torch.manual_seed(0)
    local = pe_dense.create_model("PE-Spatial-T16-512", window_size=1, pos_embed="tile")
    weights = tmp_path / "local.pt"
    torch.save(local.state_dict(), weights)

    def run(**kw):
        return extract_features([str(img)], size=None, tower=local, progress=False, **kw)[0].features[11]

    whole = run()
    assert whole.shape[-2:] == (13, 21)
    for blend in ("ramp", "mean"):
        tiled = run(tile=96, overlap=48, blend=blend)
        assert (tiled - whole).abs().max().item() < 1e-5, blend
    outs = {}
    for name, extra in {"whole": [], "tiled": ["--tile", "64", "--overlap", "32"]}.items():
        cli(["features", str(img), "--save", str(tmp_path / name), "--size", "native", "--fp32", "--window-size", "1",
             "--pos-embed", "tile", "--checkpoint", str(weights), "--device", "cpu"] + extra)
        outs[name] = read_features(str(tmp_path / name / "a.safetensors"))[0]["features"]
    assert torch.allclose(outs["whole"], whole) and (outs["tiled"] - outs["whole"]).abs().max().item() < 1e-5


def _joint_bilateral(feat, img, patch, stride, radius=2, sigma_spatial=1.0, sigma_range=0.1):
    """The joint bilateral filter as ``guided_upsample`` defines it, computed pixel by pixel in float64 (sides
    multiples of the patch and of the stride): output pixel q at cell coordinates (u, v) = ((i + 0.5) s / p - 0.5,
    ...), the (2r + 1)^2 cells around round(u, v) (clamped to the grid), each weighted by its spatial distance to q
    and by the distance of its mean colour to q's colour (averaged over the stride)."""
    C, h, w = feat.shape
    H, W = img.shape[:2]
    im = img.astype(np.float64) / 255
    f = feat.double().numpy()
    cell = im.reshape(h, patch, w, patch, 3).mean((1, 3))
    out = np.zeros((C, H // stride, W // stride))
    for i in range(H // stride):
        u = (i + 0.5) * stride / patch - 0.5
        for j in range(W // stride):
            v = (j + 0.5) * stride / patch - 0.5
            colour = im[i * stride:(i + 1) * stride, j * stride:(j + 1) * stride].reshape(-1, 3).mean(0)
            num, den = np.zeros(C), 0.0
            for dy in range(-radius, radius + 1):
                cy = min(max(round(u) + dy, 0), h - 1)
                for dx in range(-radius, radius + 1):
                    cx = min(max(round(v) + dx, 0), w - 1)
                    wt = np.exp(-((u - cy) ** 2 + (v - cx) ** 2) / (2 * sigma_spatial ** 2)) * np.exp(
                        -((colour - cell[cy, cx]) ** 2).sum() / (2 * sigma_range ** 2))
                    num += f[:, cy, cx] * wt
                    den += wt
            out[:, i, j] = num / den
    return torch.from_numpy(out)


def test_guided_upsampling_is_the_joint_bilateral_filter_computed_per_pixel():
    """The known answer for guided upsampling, on features that vary inside each region (ramps across the cells)
    and an image with an edge inside a cell: chunked, strided and at stride 1 it equals the filter computed pixel by
    pixel; the fp16 output equals the fp32 one to fp16's precision. A kernel shifted by a cell breaks it (the
    piecewise-constant test above does not see such a shift inside a region)."""
    img = np.zeros((48, 64, 3), np.uint8)
    img[:, :27] = (200, 40, 40)
    img[:, 27:] = (30, 160, 220)
    img[30:, :] //= 2
    yy, xx = torch.meshgrid(torch.arange(3.0), torch.arange(4.0), indexing="ij")
    feat = torch.stack([yy + 0.5 * xx, xx - 2 * yy, torch.sin(xx + yy)])  # (3, 3, 4): ramps, no flat region
    for stride, chunk in ((1, 32), (2, 5), (4, 3)):
        want = _joint_bilateral(feat, img, 16, stride)
        got = guided_upsample(feat, img, 16, stride=stride, chunk_rows=chunk)
        assert got.shape == want.shape and (got.double() - want).abs().max().item() < 1e-4, stride
    half = guided_upsample(feat, img, 16, stride=1, out_dtype=torch.float16)
    full = guided_upsample(feat, img, 16, stride=1)
    assert half.dtype == torch.float16 and torch.allclose(half.float(), full, rtol=1e-3, atol=1e-3)

"""Segment by text (pe_dense.modeling.clip.dense_embeddings, pe-dense segment): known answers for each mechanism.

- The value path of PE-Core's head per patch is, by definition, the image embedding that timm's attention pooling
  (OpenCLIP's PE-Core head) gives an image of that one token: checked against timm's module.
- A planted tower: the patch embedding reads each patch's mean colour, every block adds nothing but the last, whose
  attention passes its values through, and the projection maps each colour to a chosen class's text embedding. Every
  method must then return the planted classes, pixel for pixel, from the command line (proxy: with a planted
  PE-Spatial tower of the same kind).
- The proxy's attention is used: on stripes sprinkled with patches of the other colours, the value path labels each
  patch by its own colour, while the proxy (clean stripe regions) labels each stripe by its majority.
"""
import re

import numpy as np
import pytest
import torch

open_clip = pytest.importorskip("open_clip")

import pe_dense  # noqa: E402
from pe_dense.clip import zero_shot_weights  # noqa: E402
from pe_dense.errors import PEDenseError  # noqa: E402
from pe_dense.modeling.clip import dense_embeddings, head_values  # noqa: E402

NAME = "PE-Core-T16-384"
COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}


def test_value_path_is_timms_attention_pooling_of_one_token():
    from test_clip import _perturbed_openclip

    oc = _perturbed_openclip(seed=2)
    ours = pe_dense.create_clip(NAME, pretrained=oc.state_dict()).eval()
    tok = torch.randn(2, 7, 192)
    trunk = oc.visual.trunk
    with torch.no_grad():
        ref = torch.stack([trunk.head(trunk.attn_pool(trunk.norm(tok[:, i:i + 1]))) for i in range(7)], 1)
        got = head_values(ours.visual, tok)
    assert (ref - got).abs().max() < 1e-5


def _stripes(salt=()):
    """64 x 96 px: three vertical stripes (red, green, blue) of 4 x 2 patches each; ``salt``: (row, column, colour
    index) of patches painted in another colour."""
    truth = np.repeat(np.arange(3), 2)[None].repeat(4, 0)
    for i, j, k in salt:
        truth[i, j] = k
    colours = np.array(list(COLOURS.values()), np.uint8)
    return np.kron(colours[truth], np.ones((16, 16, 1), np.uint8)), truth


SALT = [(0, 0, 1), (2, 1, 2), (1, 2, 0), (3, 3, 2), (0, 5, 0), (2, 4, 1)]  # one or two patches per stripe


def _eye(n):
    return torch.eye(n)


def _colour_patches(tower):
    """Token = (r, g, b, -r, -g, -b, 0, ...) of the patch's mean normalized colour, no position: zero-mean, so
    LayerNorm only scales it, and tokens of different colours are far apart. Every LayerNorm plain (weight 1, bias 0)
    and every block adding nothing (attention output and MLP output projections zero)."""
    for mod in tower.modules():
        if isinstance(mod, torch.nn.LayerNorm):
            mod.weight.fill_(1)
            mod.bias.zero_()
    tower.conv1.weight.zero_()
    for c in range(3):
        tower.conv1.weight[c, c] = 1.0 / 256
        tower.conv1.weight[3 + c, c] = -1.0 / 256
    tower.positional_embedding.zero_()
    for blk in tower.transformer.resblocks:
        for lin in (blk.attn.out_proj, blk.mlp.c_proj):
            lin.weight.zero_()
            lin.bias.zero_()


def _planted_clip(seed=0):
    """PE-Core-T whose patch embedding is the patch's mean colour (``_colour_patches``), blocks 0..10 add nothing,
    the last block's attention (queries and keys 20x its normalized input: each token attends to itself and to
    tokens of its colour) passes values through, and the head maps the red/green/blue patches' tokens to the text
    embeddings of "red", "green", "blue" (a random text tower)."""
    torch.manual_seed(seed)
    m = pe_dense.create_clip(NAME).eval()
    v, C = m.visual, m.visual.width
    text = zero_shot_weights(m, list(COLOURS), ["{}"])
    with torch.no_grad():
        _colour_patches(v)
        v.class_embedding.zero_()
        last = v.transformer.resblocks[-1]
        last.attn.in_proj_weight.copy_(torch.cat([20 * _eye(C), 20 * _eye(C), _eye(C)]))
        last.attn.in_proj_bias.zero_()
        last.attn.out_proj.weight.copy_(_eye(C))
        ap = v.attn_pool
        ap.attn.in_proj_weight[2 * C:] = _eye(C)
        ap.attn.in_proj_bias.zero_()
        ap.attn.out_proj.weight.copy_(_eye(C))
        ap.attn.out_proj.bias.zero_()
        ap.mlp.c_proj.weight.zero_()
        ap.mlp.c_proj.bias.zero_()
        # the normalized token of each pure colour -> its class's text embedding (least squares: exact, 3 rows)
        x = torch.zeros(3, C)
        for k, rgb in enumerate(COLOURS.values()):
            x[k, :3] = torch.tensor(rgb) / 127.5 - 1
            x[k, 3:6] = -x[k, :3]
        x = torch.nn.functional.layer_norm(x, (C,))
        v.proj.copy_(torch.linalg.pinv(x) @ text)
    return m, text


def _planted_spatial(seed=0):
    """PE-Spatial-T of the same kind (mean colour per patch, blocks adding nothing): its features group patches by
    colour, the proxy's known answer."""
    torch.manual_seed(seed)
    t = pe_dense.create_model("PE-Spatial-T16-512").eval()
    with torch.no_grad():
        _colour_patches(t)
    return t


@pytest.fixture(scope="module")
def planted_files(tmp_path_factory):
    from PIL import Image

    d = tmp_path_factory.mktemp("planted")
    clip, _ = _planted_clip()
    torch.save(clip.state_dict(), d / "clip.pt")
    torch.save(_planted_spatial().state_dict(), d / "spatial.pt")
    img, truth = _stripes()
    Image.fromarray(img).save(d / "stripes.png")
    return d, truth


@pytest.mark.parametrize("method", ["value", "clearclip", "naclip", "proxy"])
def test_segment_command_returns_the_planted_classes(planted_files, tmp_path, method):
    from PIL import Image

    from pe_dense.cli import main

    d, truth = planted_files
    out = tmp_path / "out"
    args = ["segment", str(d / "stripes.png"), "--classes", "red,green,blue", "--method", method, "--checkpoint",
            str(d / "clip.pt"), "--templates", "none", "--size", "64", "--out", str(out), "--device", "cpu"]
    if method == "proxy":
        args += ["--proxy", "PE-Spatial-T16-512", "--proxy-checkpoint", str(d / "spatial.pt")]
    main(args)
    labels = np.asarray(Image.open(out / "stripes_labels.png"))
    assert labels.shape == (64, 96)
    np.testing.assert_array_equal(labels, np.kron(truth, np.ones((16, 16), np.int64)))
    assert (out / "stripes.png").exists()
    assert open(out / "classes.txt").read().splitlines() == ["0 red", "1 green", "2 blue"]


def test_windows_and_background_threshold(planted_files, tmp_path):
    """Sliding windows give the same labels as the whole image on the planted tower (tokens do not mix); with
    exp(logit_scale) at 1, each pixel's best probability is e / (e + e^c1 + e^c2) (c: the other classes' cosines),
    so a threshold above it marks every pixel 255 and one below it none."""
    from PIL import Image

    from pe_dense.cli import main

    d, truth = planted_files
    expected = np.kron(truth, np.ones((16, 16), np.int64))
    base = ["segment", str(d / "stripes.png"), "--classes", "red,green,blue", "--templates", "none", "--size", "64",
            "--device", "cpu"]
    main(base + ["--checkpoint", str(d / "clip.pt"), "--window", "48", "--stride", "16", "--out", str(tmp_path / "w")])
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "w" / "stripes_labels.png")), expected)

    clip, text = _planted_clip()
    with torch.no_grad():
        clip.logit_scale.zero_()
    torch.save(clip.state_dict(), tmp_path / "scale1.pt")
    cos = text @ text.t()
    best = (1 / cos.exp().sum(1)).max().item() * np.e  # the largest best-class probability of the three colours
    for thresh, all_ignored in ((best + 0.01, True), (best / 2, False)):
        out = tmp_path / f"t{thresh:.3f}"
        main(base + ["--checkpoint", str(tmp_path / "scale1.pt"), "--bg-thresh", f"{thresh}", "--out", str(out)])
        labels = np.asarray(Image.open(out / "stripes_labels.png"))
        if all_ignored:
            assert (labels == 255).all()
        else:
            np.testing.assert_array_equal(labels, expected)


def test_the_proxy_attention_decides():
    """Stripes sprinkled with patches of the other colours: the value path labels each patch by its own colour; the
    proxy (clean stripes, one-hot features) averages each stripe's values, so each stripe gets its majority class."""
    from pe_dense.data.images import normalize

    clip, text = _planted_clip()
    img, truth = _stripes(SALT)
    stripe = np.repeat(np.arange(3), 2)[None].repeat(4, 0)
    assert (truth != stripe).any() and all((truth[stripe == k] == k).mean() > 0.5 for k in range(3))
    x = normalize(img)[None]
    proxy = torch.nn.functional.one_hot(torch.from_numpy(stripe), 3).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        own = torch.einsum("bdhw,kd->bkhw", dense_embeddings(clip, x, "value"), text).argmax(1)[0]
        grouped = torch.einsum("bdhw,kd->bkhw", dense_embeddings(clip, x, "proxy", proxy), text).argmax(1)[0]
    np.testing.assert_array_equal(own.numpy(), truth)
    np.testing.assert_array_equal(grouped.numpy(), stripe)


def test_naclip_attention_is_the_gaussian_neighbourhood():
    """With the last block's keys at zero, NACLIP's attention is the neighbourhood prior alone: each patch's
    embedding is the head applied to the Gaussian-weighted mean (exp(-d^2 / 2 sigma^2) over patch distances d, class
    token left out) of the tokens' values, computed here by hand."""
    from pe_dense.data.images import normalize

    clip, _ = _planted_clip()
    C = clip.visual.width
    with torch.no_grad():
        clip.visual.transformer.resblocks[-1].attn.in_proj_weight[C:2 * C] = 0
    img, truth = _stripes(SALT)
    x = normalize(img)[None]
    vals = torch.zeros(24, C)  # each patch's value: its normalized colour token
    for n, k in enumerate(truth.ravel()):
        rgb = torch.tensor(list(COLOURS.values())[k]) / 127.5 - 1
        vals[n, :3], vals[n, 3:6] = rgb, -rgb
    vals = torch.nn.functional.layer_norm(vals, (C,))
    yy, xx = np.divmod(np.arange(24), 6)
    d2 = torch.tensor((yy[:, None] - yy[None]) ** 2 + (xx[:, None] - xx[None]) ** 2, dtype=torch.float32)
    for sigma in (0.7, 2.0):
        w = torch.softmax(-d2 / (2 * sigma ** 2), dim=1)
        with torch.no_grad():
            expected = head_values(clip.visual, (w @ vals)[None])[0].t().reshape(-1, 4, 6)
            got = dense_embeddings(clip, x, "naclip", sigma=sigma)[0]
        assert (got - expected).abs().max() < 1e-4 * expected.abs().max()


def test_segment_refusals(tmp_path, planted_files, capsys):
    from pe_dense.cli import main

    d, _ = planted_files
    img = str(d / "stripes.png")
    spatial = tmp_path / "spatial.pt"
    torch.save(pe_dense.create_model("PE-Spatial-T16-512").state_dict(), spatial)
    for extra, match in (
            (["--classes", ""], "empty class list"),
            (["--classes", "a,,b"], "empty class name"),
            (["--classes", "sky", "--checkpoint", str(spatial)], "no text tower"),
            (["--classes", "sky", "--method", "proxy"], "method 'proxy' and a proxy tower go together"),
            (["--classes", "sky", "--proxy", "PE-Spatial-T16-512"], "proxy tower is used by method 'proxy' only"),
            (["--classes", "sky", "--bg-thresh", "1.5"], r"probability in \(0, 1\)"),
            (["--classes", "sky", "--size", "64", "--window", "128"], "larger than the image"),
            (["--classes", "sky", "--model", "PE-Spatial-T16-512"], "has no text tower")):
        with pytest.raises(SystemExit) as e:
            main(["segment", img, "--out", str(tmp_path / "o"), "--device", "cpu", "--templates", "none"] + extra)
        assert e.value.code == 2
        assert re.search(match, capsys.readouterr().err), match
    with pytest.raises(PEDenseError, match="unknown dense method"):
        dense_embeddings(pe_dense.create_clip(NAME), torch.zeros(1, 3, 32, 32), "maskclip2")


def test_features_text_saves_per_class_similarity_maps(planted_files, tmp_path):
    """pe-dense features --text with the planted tower: DIR/<name>.safetensors holds (K, h, w) cosines whose argmax
    is the planted stripes, the class names in its metadata; tiles give the same maps (tokens do not mix)."""
    import json

    from pe_dense.cli import main
    from pe_dense.features import read_features

    d, truth = planted_files
    base = ["features", str(d / "stripes.png"), "--model", NAME, "--checkpoint", str(d / "clip.pt"), "--text",
            "red,green,blue", "--templates", "none", "--size", "64", "--fp32", "--device", "cpu"]
    main(base + ["--save", str(tmp_path / "whole")])
    tensors, meta = read_features(str(tmp_path / "whole" / "stripes.safetensors"))
    sims = tensors["features"]
    assert sims.shape == (3, 4, 6) and json.loads(meta["text_classes"]) == ["red", "green", "blue"]
    np.testing.assert_array_equal(sims.argmax(0).numpy(), truth)
    assert torch.allclose(sims.max(0).values, torch.ones(4, 6), atol=1e-5)  # each patch is its class's embedding
    main(base + ["--save", str(tmp_path / "tiled"), "--tile", "32"])
    tiled, _ = read_features(str(tmp_path / "tiled" / "stripes.safetensors"))
    assert torch.allclose(tiled["features"], sims, atol=1e-5)
    with pytest.raises(SystemExit):
        main(base + ["--save", str(tmp_path / "x"), "--block", "3"])


def test_sides_not_multiples_of_the_patch_stay_aligned(planted_files, tmp_path):
    """A 70 x 100 px image (the tower pads it to 80 x 112: 5 x 7 patches) of stripes at columns 0-31, 32-63, 64-99:
    the labels keep the stripes' borders at pixels 32 and 64 (the patch grid is resized to the padded canvas and cut,
    not stretched over the image: that would move the first border to pixel 28.6)."""
    from PIL import Image

    from pe_dense.cli import main

    d, _ = planted_files
    colours = np.array(list(COLOURS.values()), np.uint8)
    cols = np.repeat([0, 1, 2], [32, 32, 36])
    Image.fromarray(colours[cols][None].repeat(70, 0)).save(tmp_path / "odd.png")
    main(["segment", str(tmp_path / "odd.png"), "--classes", "red,green,blue", "--checkpoint", str(d / "clip.pt"),
          "--templates", "none", "--size", "70", "--out", str(tmp_path / "o"), "--device", "cpu"])
    labels = np.asarray(Image.open(tmp_path / "o" / "odd_labels.png"))
    np.testing.assert_array_equal(labels, cols[None].repeat(70, 0))

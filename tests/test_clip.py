"""PE-Core as CLIP (pe_dense.create_clip, tokenize, pe-dense classify) against OpenCLIP's PE-Core (its text tower and
timm's image tower with attention pooling), which carries the same model: a known answer from outside pe_dense.
The released code itself was measured once outside the suite (README, "PE-Core as CLIP")."""
import numpy as np
import pytest
import torch

open_clip = pytest.importorskip("open_clip")

import pe_dense  # noqa: E402
from pe_dense.checkpoint import CheckpointError  # noqa: E402
from pe_dense.clip import parse_classes, templates  # noqa: E402
from pe_dense.errors import PEDenseError, UnknownNameError  # noqa: E402

NAME, OC_NAME = "PE-Core-T16-384", "PE-Core-T-16-384"
TEXTS = ["a photo of a cat.", "A DIAGRAM of   the Eiffel tower &amp; a café", "x " * 60]


def _perturbed_openclip(seed=0):
    torch.manual_seed(seed)
    m = open_clip.create_model(OC_NAME, pretrained=None).eval()
    with torch.no_grad():  # every path carries values of its own (no zero bias hides a wrong wiring)
        for n, p in m.named_parameters():
            if not n.endswith(("logit_scale", "head.bias")):  # timm's head.bias stands for PE's bias-free proj
                p.add_(0.02 * torch.randn_like(p))
    return m


@pytest.fixture(scope="module")
def openclip_file(tmp_path_factory):
    m = _perturbed_openclip()
    path = tmp_path_factory.mktemp("clip") / "open_clip_pe_core_t.pt"
    torch.save(m.state_dict(), path)
    return m, str(path)


def _outputs(model, img, tok):
    with torch.no_grad():
        i, t, s = model(img, tok)
        return model.encode_image(img), model.encode_text(tok), s * i @ t.t()


def test_openclip_weights_give_openclips_embeddings_and_logits(openclip_file):
    """OpenCLIP's layout (visual.trunk.* under timm's names, text.*) loads whole; image and text embeddings and logits
    equal OpenCLIP's within 1e-4 (measured: 5e-8, 3e-6, 5e-7)."""
    oc, path = openclip_file
    ours = pe_dense.create_clip(NAME, pretrained=path).eval()
    img = torch.randn(2, 3, 384, 384)
    tok = open_clip.get_tokenizer(OC_NAME)(TEXTS)
    for a, b in zip(_outputs(oc, img, tok), _outputs(ours, img, pe_dense.tokenize(TEXTS, 32))):
        assert a.shape == b.shape
        assert (a - b).abs().max() < 1e-4


def test_our_names_are_the_released_ones_as_timm_and_openclip_read_them():
    """A PECLIP state dict is a released PE-Core file: timm's own checkpoint_filter_fn maps its visual.* into the
    image tower (heads included) strictly, and its text keys load strictly into OpenCLIP's text tower; then OpenCLIP
    computes what we compute. Saved and read back, it loads whole into a new model."""
    from timm.models.eva import checkpoint_filter_fn

    torch.manual_seed(1)
    ours = pe_dense.create_clip(NAME).eval()
    with torch.no_grad():
        for n, p in ours.named_parameters():
            if n != "logit_scale":
                p.add_(0.02 * torch.randn_like(p))
    sd = ours.state_dict()
    oc = open_clip.create_model(OC_NAME, pretrained=None).eval()
    oc.visual.trunk.load_state_dict(checkpoint_filter_fn(sd, oc.visual.trunk), strict=True)
    oc.text.load_state_dict({k: v for k, v in sd.items() if not k.startswith("visual.") and k != "logit_scale"},
                            strict=True)
    oc.logit_scale.data.copy_(sd["logit_scale"])
    img = torch.randn(1, 3, 384, 384)
    for a, b in zip(_outputs(oc, img, open_clip.get_tokenizer(OC_NAME)(TEXTS)),
                    _outputs(ours, img, pe_dense.tokenize(TEXTS, 32))):
        assert (a - b).abs().max() < 1e-4
    again = pe_dense.create_clip(NAME, pretrained=sd)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in sd.items())


def test_tokenizer_known_ids():
    """OpenAI CLIP's BPE ids (start 49406, 'a' 320, 'photo' 1125, 'of' 539, 'cat' 2368, '.' 269, end 49407), zero
    padding, lower-casing, and a long text cut with its end-of-text token kept last."""
    t = pe_dense.tokenize(["a photo of a cat.", "A PHOTO OF A CAT."], 32)
    assert t.shape == (2, 32) and t.dtype == torch.int64
    assert t[0, :8].tolist() == [49406, 320, 1125, 539, 320, 2368, 269, 49407] and not t[0, 8:].any()
    assert torch.equal(t[0], t[1])
    long = pe_dense.tokenize("x " * 60, 32)[0]
    assert long[0] == 49406 and long[-1] == 49407 and (long[1:-1] != 0).all()
    # the context length is the model's: G reads 72 tokens
    assert pe_dense.create_clip.__module__ and pe_dense.specs.TEXT_SPECS["PE-Core-G14-448"].context_length == 72


def test_clip_refusals(tmp_path, openclip_file):
    _, path = openclip_file
    spatial = tmp_path / "spatial.pt"
    torch.save(pe_dense.create_model("PE-Spatial-T16-512").state_dict(), spatial)
    with pytest.raises(CheckpointError, match=r"no text tower.*PE-Spatial-T16-512.*PE-Core CLIP checkpoint"):
        pe_dense.create_clip(NAME, pretrained=str(spatial))
    sd = torch.load(path, weights_only=True)
    del sd["text.transformer.resblocks.3.mlp.c_fc.weight"]
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): transformer.resblocks.3.mlp.c_fc.weight"):
        pe_dense.create_clip(NAME, pretrained=sd)
    with pytest.raises(CheckpointError, match=r"shape mismatch"):  # T's file into S (both have S's text tower)
        pe_dense.create_clip("PE-Core-S16-384", pretrained=path)
    with pytest.raises(UnknownNameError, match="PE-Spatial-B16-512 has no text tower"):
        pe_dense.create_clip("PE-Spatial-B16-512")
    with pytest.raises(PEDenseError, match="does not take"):
        pe_dense.create_clip(NAME, window_size=8)
    with pytest.raises(PEDenseError, match="context_length=32"):
        pe_dense.create_clip(NAME).encode_text(pe_dense.tokenize("a", 72))


def test_class_names_and_templates(tmp_path):
    assert parse_classes(" sky, road ,person ") == ["sky", "road", "person"]
    (tmp_path / "c.txt").write_text("# classes\nsky\n\nroad\n")
    assert parse_classes(str(tmp_path / "c.txt")) == ["sky", "road"]
    (tmp_path / "c.json").write_text('{"classes": ["sky", "traffic light"]}')
    assert parse_classes(str(tmp_path / "c.json")) == ["sky", "traffic light"]
    (tmp_path / "c.yaml").write_text("- sky\n")
    for bad, match in (("", "empty class list"), (" , ", "empty class name"), ("a,,b", r"empty class name.*\[1\]"),
                       ("cat,Cat", "repeated: Cat"), (str(tmp_path / "c.yaml"), "neither")):
        with pytest.raises(PEDenseError, match=match):
            parse_classes(bad)
    with pytest.raises(FileNotFoundError, match="class-names file not found"):
        parse_classes(str(tmp_path / "missing.txt"))
    assert len(templates("imagenet80")) == 80 and templates("imagenet80")[0]("dog") == "a bad photo of a dog."
    (tmp_path / "t.txt").write_text("a photo of {}.\nno slot here\n")
    with pytest.raises(PEDenseError, match="exactly one"):
        templates(str(tmp_path / "t.txt"))
    with pytest.raises(PEDenseError, match="imagenet80, simple, none"):
        templates("imagenet81")


def test_classify_command_equals_openclip_zero_shot(tmp_path, openclip_file, capsys):
    """pe-dense classify on a folder (the released transform, the 7-prompt ensemble) gives the class probabilities
    OpenCLIP computes with its own transform, tokenizer and model, prompt ensemble written out here."""
    import csv

    from PIL import Image

    from pe_dense.cli import main

    oc, path = openclip_file
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    for i, hw in enumerate([(200, 300), (256, 256), (320, 180)]):
        Image.fromarray(rng.integers(0, 255, hw + (3,), dtype=np.uint8)).save(folder / f"im{i}.png")
    classes = ["red car", "green tree", "blue sky", "cat"]
    out = tmp_path / "out.csv"
    main(["classify", str(folder), "--classes", ",".join(classes), "--checkpoint", path, "--templates", "simple",
          "--top-k", "4", "--out", str(out), "--device", "cpu"])
    assert "classified 3 image(s) into 4 classes" in capsys.readouterr().out
    rows = list(csv.DictReader(open(out)))
    assert [r["file"] for r in rows] == [str(folder / f"im{i}.png") for i in range(3)]

    from open_clip.zero_shot_metadata import SIMPLE_IMAGENET_TEMPLATES

    tokenizer = open_clip.get_tokenizer(OC_NAME)
    preprocess = open_clip.image_transform(384, is_train=False, mean=(0.5,) * 3, std=(0.5,) * 3,
                                           interpolation="bilinear", resize_mode="squash")
    with torch.no_grad():
        text = []
        for c in classes:
            e = oc.encode_text(tokenizer([t(c) for t in SIMPLE_IMAGENET_TEMPLATES]), normalize=True).mean(0)
            text.append(e / e.norm())
        img = oc.encode_image(torch.stack([preprocess(Image.open(folder / f"im{i}.png")) for i in range(3)]),
                              normalize=True)
        probs = (oc.logit_scale.exp() * img @ torch.stack(text).t()).softmax(-1)
    for r, p in zip(rows, probs):
        got = {r[f"class_{k}"]: float(r[f"prob_{k}"]) for k in range(1, 5)}
        assert [r[f"class_{k}"] for k in range(1, 5)] == [classes[j] for j in p.argsort(descending=True)]
        assert max(abs(got[c] - float(p[j])) for j, c in enumerate(classes)) < 1e-4

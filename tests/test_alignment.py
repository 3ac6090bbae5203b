"""Output pixel (y, x) is input pixel (y, x): maps of an input whose sides are not multiples of the patch cover
exactly that input (``fit="resize"``, the MMSeg default), in training (what the loss sees), whole and slide inference.

The answer is known by construction: a tower whose features at the last block carry the sign of each patch's mean
(conv1 = patch mean, no position table, residual branches zeroed, ln_pre normalizes), on an image of +1 with a stripe
of -1 on its last 25 rows. With the patch-aligned geometry below the predicted stripe starts at the exact row.
"""
import pytest
import torch
import torch.nn.functional as F

import pe_dense

H, W, STRIPE = 100, 64, 75  # 100 rows, patch 14: resized to 112, the stripe starts on a token boundary there


def sign_tower(model):
    """Make ``model`` (a PEViT) output +c where a patch's mean is positive and -c where it is negative, channel 0."""
    p = model.patch_size
    with torch.no_grad():
        model.conv1.weight.zero_()
        model.conv1.weight[0] = 1.0 / (3 * p * p)
        model.conv1.weight[1] = -1.0 / (3 * p * p)
        model.positional_embedding.zero_()
        for blk in model.transformer.resblocks:
            for lin in (blk.attn.out_proj, blk.mlp.c_proj):
                lin.weight.zero_()
                lin.bias.zero_()
    return model


def stripe_image(h=H, w=W, start=STRIPE):
    x = torch.ones(1, 3, h, w)
    x[:, :, start:] = -1.0
    return x


def stripe_rows(x_map, h):
    """Rows where channel 0 (upsampled as frameworks do: bilinear, align_corners=False) is negative."""
    up = F.interpolate(x_map[:, :1], size=(h, x_map.shape[-1]), mode="bilinear", align_corners=False)
    neg = (up[0, 0] < 0).all(dim=1)
    return neg.nonzero().flatten().tolist()


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_resize_fit_maps_cover_the_input(mode):
    m = sign_tower(pe_dense.create_model("PE-Spatial-T16-512", patch_size=14, use_cls_token=False, fit="resize"))
    getattr(m, mode)()
    with torch.no_grad():
        feat = m(stripe_image())[0]
    assert feat.shape[-2:] == (8, 5)  # ceil(100 / 14), ceil(64 / 14)
    assert stripe_rows(feat, H) == list(range(STRIPE, H))
    # the same tower padding instead (the framework-free default, whose maps cover the padded canvas) puts the
    # stripe 12.5 rows higher once its map is stretched over the input: what MMSeg configs did before
    m.fit = "pad"
    with torch.no_grad():
        assert stripe_rows(m(stripe_image())[0], H)[0] == 63


def test_bad_fit_is_an_error():
    with pytest.raises(ValueError, match="fit must be one of"):
        pe_dense.create_model("PE-Spatial-T16-512", fit="crop")


# (patch, rows, cols, stripe start): sides that are not multiples of the patch (odd ones too); the stripe starts on
# a token boundary once the input is resized to whole patches (row s lands on s * ceil(H / p) * p / H)
GEOMETRIES = [(14, 100, 64, 75), (14, 91, 65, 78), (16, 105, 63, 90)]
IDS = [f"p{p}-{h}x{w}" for p, h, w, _ in GEOMETRIES]


def _segmentor(test_cfg, patch=14):
    pytest.importorskip("mmseg")
    from mmengine.config import ConfigDict
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    import pe_dense.mmseg  # noqa: F401

    init_default_scope("mmseg")
    model = MODELS.build(dict(
        type="EncoderDecoder",
        data_preprocessor=dict(type="SegDataPreProcessor", mean=[127.5] * 3, std=[127.5] * 3, bgr_to_rgb=True),
        backbone=dict(type="PEBackbone", model_name="PE-Spatial-T16-512", patch_size=patch, out_indices=[-1]),
        decode_head=dict(type="PELinearHead", in_channels=[192], num_classes=2, align_corners=False),
        test_cfg=ConfigDict(test_cfg)))
    assert model.backbone.vit.fit == "resize"  # the MMSeg default
    sign_tower(model.backbone.vit)
    with torch.no_grad():  # class 0 = +feature, class 1 (the stripe) = -feature
        conv = model.decode_head.head.conv
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[0, 0] = 1.0
        conv.weight[1, 0] = -1.0
    return model.eval()


def _predict(model, x):
    pytest.importorskip("mmseg")
    from mmseg.structures import SegDataSample

    h, w = x.shape[-2:]
    s = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w)))
    with torch.no_grad():
        return model.predict(x, [s])[0].pred_sem_seg.data[0]


def _rows(pred):
    return (pred == 1).all(dim=1).nonzero().flatten().tolist(), (pred == 1).any(dim=1).nonzero().flatten().tolist()


@pytest.mark.parametrize("patch,h,w,stripe", GEOMETRIES, ids=IDS)
def test_mmseg_whole_inference_is_aligned(patch, h, w, stripe):
    pred = _predict(_segmentor(dict(mode="whole"), patch), stripe_image(h, w, stripe))
    full, partial = _rows(pred)
    assert full == partial == list(range(stripe, h))


@pytest.mark.parametrize("patch,h,w,stripe", GEOMETRIES, ids=IDS)
def test_mmseg_slide_inference_is_aligned(patch, h, w, stripe):
    # crops of h x w (not multiples of the patch) at rows 0, h // 2, h of a 2h-row image; the stripe is in the last
    pred = _predict(_segmentor(dict(mode="slide", crop_size=(h, w), stride=(h // 2, w)), patch),
                    stripe_image(2 * h, w, h + stripe))
    full, partial = _rows(pred)
    assert full == partial == list(range(h + stripe, 2 * h))


@pytest.mark.parametrize("patch,h,w,stripe", GEOMETRIES, ids=IDS)
def test_mmseg_training_loss_sees_aligned_logits(patch, h, w, stripe):
    """Through mmseg's own training path (``model.loss``: its head resizes the logits to the label's size, then
    calls the loss): the class map the loss scores is the label's, row for row."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    model = _segmentor(dict(mode="whole"), patch)
    model.train()
    model.decode_head.head.bn.eval()  # batch statistics of one image would rescale the planted features
    label = torch.zeros(1, h, w, dtype=torch.long)
    label[:, stripe:] = 1
    sample = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w)))
    sample.gt_sem_seg = PixelData(data=label)
    seen = {}

    def record(module, args, kwargs, out):
        seen["logits"], seen["label"] = args[0].detach(), args[1]

    hook = model.decode_head.loss_decode.register_forward_hook(record, with_kwargs=True)
    try:
        losses = model.loss(stripe_image(h, w, stripe), [sample])
    finally:
        hook.remove()
    assert seen["logits"].shape[-2:] == (h, w) and torch.equal(seen["label"][0], label[0])
    assert torch.equal(seen["logits"].argmax(1)[0], label[0])  # every pixel, not only the rows
    assert torch.isfinite(losses["decode.loss_ce"])

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


def _segmentor(test_cfg):
    pytest.importorskip("mmseg")
    from mmengine.config import ConfigDict
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    import pe_dense.mmseg  # noqa: F401

    init_default_scope("mmseg")
    model = MODELS.build(dict(
        type="EncoderDecoder",
        data_preprocessor=dict(type="SegDataPreProcessor", mean=[127.5] * 3, std=[127.5] * 3, bgr_to_rgb=True),
        backbone=dict(type="PEBackbone", model_name="PE-Spatial-T16-512", patch_size=14, out_indices=[-1]),
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


def test_mmseg_whole_inference_is_aligned():
    pred = _predict(_segmentor(dict(mode="whole")), stripe_image())
    full, partial = _rows(pred)
    assert full == partial == list(range(STRIPE, H))


def test_mmseg_slide_inference_is_aligned():
    # crops of 100 x 64 (not multiples of 14) at rows 0, 50, 100 of a 200-row image; the stripe is in the last crop
    pred = _predict(_segmentor(dict(mode="slide", crop_size=(100, 64), stride=(50, 64))),
                    stripe_image(200, W, 100 + STRIPE))
    full, partial = _rows(pred)
    assert full == partial == list(range(100 + STRIPE, 200))


def test_mmseg_training_sees_aligned_logits():
    """The loss resizes the logits to the label's size: the class map it scores is aligned with the label."""
    from mmseg.models.utils import resize

    model = _segmentor(dict(mode="whole"))
    model.train()
    model.decode_head.head.bn.eval()  # batch statistics of one image would rescale the planted features
    x = stripe_image()
    with torch.no_grad():
        logits = model.decode_head(model.extract_feat(x))
        logits = resize(logits, size=(H, W), mode="bilinear", align_corners=False)
    full, partial = _rows(logits.argmax(1)[0])
    assert full == partial == list(range(STRIPE, H))

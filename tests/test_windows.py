"""Predictions at any size: sliding windows blended without steps (pe_dense.modeling.windows, and MMSeg's test_cfg
through PEEncoderDecoder / PEDepthEstimator), flip averaging with a known answer, and the refusals."""
import os

import numpy as np
import pytest
import torch

from pe_dense.errors import PEDenseError
from pe_dense.modeling.windows import border_step_ratio, flip_average, sliding_window, window_borders

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _asymmetric(x):
    """A 'model' with a planted left-right asymmetry: each output pixel is its input plus its column index."""
    cols = torch.arange(x.shape[-1], dtype=x.dtype).expand_as(x[:, :1])
    return x[:, :1] * 2 + cols


def test_windows_cover_and_one_window_is_the_whole_call():
    x = torch.rand(2, 3, 40, 50)
    whole = _asymmetric(x)
    for blend in ("mean", "ramp"):
        assert torch.allclose(sliding_window(_asymmetric, x, (64, 64), (32, 32), blend), whole, atol=1e-6)
        # a position-independent model gives the same map through any windows: the weights are normalized
        same = sliding_window(lambda t: t[:, :2] * 3, x, (16, 24), (10, 7), blend)
        assert torch.allclose(same, x[:, :2] * 3, atol=1e-5)


def test_flip_averaging_is_the_mean_of_the_prediction_and_the_mirrored_one():
    x = torch.rand(1, 3, 8, 12)
    want = (_asymmetric(x) + _asymmetric(x.flip(-1)).flip(-1)) / 2
    assert torch.allclose(flip_average(_asymmetric, x), want)
    assert torch.allclose(sliding_window(_asymmetric, x, (8, 12), (8, 12), flip=True), want, atol=1e-6)
    assert not torch.allclose(want, _asymmetric(x))


@pytest.fixture(scope="module")
def mmseg_models():
    pytest.importorskip("mmseg")
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    import pe_dense.mmseg  # noqa: F401

    init_default_scope("mmseg")
    out = {}
    for name in ("dpt_pe-spatial-t_nyu-planes-120x160.py", "upernet_pe-spatial-t_shapes-128x128.py"):
        cfg = Config.fromfile(os.path.join(ROOT, "configs", "mmseg", "embedded", name))
        cfg.model.backbone.pretrained = None
        torch.manual_seed(0)
        out[name.split("_")[0]] = MODELS.build(cfg.model).eval()
    return out


def _infer(model, x, **test_cfg):
    from mmengine.config import ConfigDict

    model.test_cfg = ConfigDict(test_cfg)
    H, W = x.shape[-2:]
    with torch.no_grad():
        return model.inference(x, [dict(img_shape=(H, W), ori_shape=(H, W), pad_shape=(H, W))])[0]


def test_blended_windows_leave_no_step_at_window_borders(mmseg_models):
    """A smooth tilted plane (depth) and large regions (segmentation), windows of 90 px every 55 px on a 200 x 260
    image (borders off the patch grid, whose own texture is not a window's): the change across window borders over
    the change inside windows is at most 1.2 blended, and far above it averaged as MMSeg does."""
    from pe_dense.data.images import shapes_image

    H, W = 200, 260
    yy, xx = np.mgrid[0:H, 0:W]
    plane = np.stack([60 + 120 * yy / H + 20 * xx / W] * 3, -1)
    images = {"dpt": plane, "upernet": np.asarray(shapes_image((H, W))).astype(float)}
    by, bx = window_borders(H, 90, 55), window_borders(W, 90, 55)
    for name, img in images.items():
        x = torch.from_numpy(img).permute(2, 0, 1).float()[None]
        r = {b: border_step_ratio(_infer(mmseg_models[name], x, mode="slide", crop_size=(90, 90), stride=(55, 55),
                                         blend=b), by, bx) for b in ("mean", "ramp")}
        assert r["ramp"] <= 1.2 < 2 * r["ramp"] < r["mean"], (name, r)


def test_segmentor_flip_and_depth_slide_are_what_they_say(mmseg_models):
    seg, depth = mmseg_models["upernet"], mmseg_models["dpt"]
    x = torch.rand(1, 3, 64, 96) * 255
    plain = _infer(seg, x, mode="whole")
    mirrored = _infer(seg, x.flip(-1), mode="whole").flip(-1)
    assert torch.allclose(_infer(seg, x, mode="whole", flip=True), (plain + mirrored) / 2, atol=1e-5)
    slide = _infer(depth, x, mode="slide", crop_size=(64, 64), stride=(32, 32))
    assert not torch.allclose(slide, _infer(depth, x, mode="whole"), atol=1e-4)  # mmseg 1.2.2 would run whole


def test_bad_window_settings_are_refused_with_the_fix(mmseg_models):
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(PEDenseError, match="two positive sizes"):
        sliding_window(_asymmetric, x, (16, 16), (0, 8))
    with pytest.raises(PEDenseError, match="leaves pixels that no window sees"):
        sliding_window(_asymmetric, x, (16, 16), (20, 8))
    with pytest.raises(PEDenseError, match="one of mean, ramp"):
        sliding_window(_asymmetric, x, (16, 16), (8, 8), blend="gauss")
    with pytest.raises(PEDenseError, match="mode='slide_flip'"):
        _infer(mmseg_models["upernet"], x, mode="slide_flip", crop_size=(16, 16), stride=(8, 8))

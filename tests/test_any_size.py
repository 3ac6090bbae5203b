"""Predictions of any size in bounded memory: the stream of bands (windows accumulated a row at a time, bilinear
resizing a band at a time) equals the whole-image computation, `pe-dense predict`'s streamed MMSeg prediction
equals mmseg's own test_step (whole with a test resize, slide with padding, depth with the flip), and the pictures
drawn a band at a time are the bytes mmseg's SegLocalVisualizer draws."""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pe_dense.modeling.windows import assemble, resize_bands, window_bands

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMB = os.path.join(ROOT, "configs", "mmseg", "embedded")


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("size_in,size_out", [((37, 53), (300, 401)), ((300, 401), (37, 53)), ((64, 64), (64, 200)),
                                              ((10, 10), (1, 1)), ((500, 20), (3, 2))])
def test_resizing_bands_is_bilinear_interpolation(size_in, size_out, align_corners):
    m = torch.randn(1, 5, *size_in)
    want = F.interpolate(m, size=size_out, mode="bilinear", align_corners=align_corners)
    bands = ((y, m[..., y: y + 7, :]) for y in range(0, size_in[0], 7))
    got = assemble(size_out, ((y, [b]) for y, b in resize_bands(bands, size_in, size_out, align_corners, 5000)))[0]
    assert torch.allclose(got, want, atol=3e-5)


def test_window_bands_yield_each_row_of_windows_before_the_next_begins():
    """The stream holds one row of windows: every band is out before a window of the next row runs, the bands
    cover the rows once and in order, and they assemble into the whole-image answer."""
    x = torch.rand(1, 2, 100, 70)
    events = []

    def run(y, x0, h, w):
        events.append(("run", y))
        return [x[..., y: y + h, x0: x0 + w] * 2]

    bands = []
    for y, (band,) in window_bands(run, (100, 70), (30, 30), (20, 20), "ramp"):
        events.append(("band", y))
        bands.append((y, band.shape[-2]))
    rows = sorted({y for kind, y in events if kind == "run"})
    assert [y for y, _ in bands] == rows and sum(n for _, n in bands) == 100
    for y in rows[1:]:  # the previous row's band came before this row's first window
        assert events.index(("run", y)) > events.index(("band", rows[rows.index(y) - 1]))
    whole = assemble((100, 70), window_bands(run, (100, 70), (30, 30), (20, 20), "ramp"))[0]
    assert torch.allclose(whole, x * 2, atol=1e-5)


@pytest.fixture
def small_bands(monkeypatch):
    """Bands of at most 4 KB: every row of windows and every resize splits into several bands (the ``step < done``
    branch of window_bands, several output bands per source band in resize_bands), as images of thousands of pixels
    do at the default size. Counts the bands yielded, to show the splits happened."""
    from pe_dense.modeling import windows

    monkeypatch.setattr(windows, "BAND_BYTES", 4096)
    counted = {"windows": 0, "resize": 0}
    for name, key in (("window_bands", "windows"), ("resize_bands", "resize")):
        fn = getattr(windows, name)

        def counting(*a, _fn=fn, _key=key, **k):
            for item in _fn(*a, **k):
                counted[_key] += 1
                yield item
        monkeypatch.setattr(windows, name, counting)
    return counted


def _model_and_data(config, hw, tmp_path, test_cfg, pipeline_edit=None, pre_test_cfg=None):
    from mmengine.config import Config, ConfigDict
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    import pe_dense.mmseg  # noqa: F401
    from pe_dense.data.images import shapes_image
    from pe_dense.mmseg.predict import _test_pipeline

    cfg = Config.fromfile(os.path.join(EMB, config))
    cfg.model.backbone.pretrained = None
    if pre_test_cfg:
        cfg.model.data_preprocessor.test_cfg = pre_test_cfg
    if pipeline_edit:
        cfg.test_pipeline = pipeline_edit(cfg.test_pipeline)
    init_default_scope("mmseg")
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    model.test_cfg = ConfigDict(dict(model.test_cfg, **test_cfg))
    img = tmp_path / "img.png"
    shapes_image(hw).save(img)
    data = _test_pipeline(cfg)(dict(img_path=str(img)))
    return model, data


class _upstream:
    """Within it, ``model`` infers with mmseg's own code (``EncoderDecoder.inference``: whole or ``slide_inference``;
    ``DepthEstimator.inference``: ``slide_flip_inference``), not with pe_dense's windows: the known answer of the
    streamed tests (with ``blend="mean"``, which is what mmseg's windows do)."""

    def __init__(self, model):
        from mmseg.models.segmentors import DepthEstimator, EncoderDecoder

        self.model = model
        self.base = DepthEstimator if isinstance(model, DepthEstimator) else EncoderDecoder

    def __enter__(self):
        import types

        self.model.inference = types.MethodType(self.base.inference, self.model)
        return self.model

    def __exit__(self, *exc):
        del self.model.inference


def _mmseg_answer(model, data, key):
    with torch.no_grad(), _upstream(model):
        sample = model.test_step(dict(inputs=[data["inputs"]], data_samples=[data["data_samples"]]))[0]
    return sample.get(key).data


@pytest.mark.parametrize("case", ["whole, test resize", "slide, padded to 32"])
def test_streamed_segmentation_is_mmseg_test_step(case, tmp_path, small_bands):
    """The streamed logits (at the image's size) and labels equal mmseg's own ``test_step`` (full preprocessed
    image, full-size post-processing): a test resize to 0.6 (resize back to the image's size in bands), and slide
    windows over an image padded by the data preprocessor (``size_divisor``); bands split small (``small_bands``)."""
    pytest.importorskip("mmseg")
    from pe_dense.mmseg.predict import _stream, prediction_bands

    def resize(steps):
        return steps[:1] + [dict(type="Resize", scale_factor=0.6, keep_ratio=True)] + steps[1:]

    if case.startswith("whole"):
        model, data = _model_and_data("upernet_pe-spatial-t_shapes-128x128.py", (150, 190), tmp_path,
                                      dict(mode="whole"), resize)
    else:
        model, data = _model_and_data("upernet_pe-spatial-t_shapes-128x128.py", (150, 190), tmp_path,
                                      dict(mode="slide", crop_size=(96, 96), stride=(64, 64), blend="mean"),
                                      pre_test_cfg=dict(size_divisor=32))
    want = _mmseg_answer(model, data, "seg_logits")
    with torch.no_grad():
        got = assemble(want.shape[-2:], ((y, [b]) for y, b in prediction_bands(model, data)))[0]
    assert got.shape == want.shape == (4, 150, 190)
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
    labels = _stream(model, data, False, ["a", "b", "c", "d"], "cpu")
    assert (labels == want.argmax(0).numpy()).mean() > 0.999
    assert small_bands["resize" if case.startswith("whole") else "windows"] > 10  # the splits happened


def test_streamed_depth_with_the_flip_is_mmseg_test_step(tmp_path, small_bands):
    pytest.importorskip("mmseg")
    from pe_dense.mmseg.predict import _stream

    model, data = _model_and_data("dpt_pe-spatial-t_nyu-planes-120x160.py", (130, 170), tmp_path,
                                  dict(mode="slide_flip", crop_size=(80, 80), stride=(48, 48), blend="mean"))
    want = _mmseg_answer(model, data, "pred_depth_map")[0].numpy()
    got = _stream(model, data, True, None, "cpu")
    assert got.shape == want.shape == (130, 170) and np.allclose(got, want, atol=1e-5)
    assert small_bands["windows"] > 10  # 3 rows of windows, each split into bands of a few rows


def test_pictures_drawn_in_bands_are_mmsegs(monkeypatch):
    """Overlay with class-name boxes (overlapping ones, a label past the classes, 300 classes in uint16 labels) and
    the depth picture, drawn in bands of a few rows: the same bytes as mmseg's SegLocalVisualizer."""
    pytest.importorskip("mmseg")
    from mmengine.structures import PixelData
    from mmseg.visualization import SegLocalVisualizer

    import pe_dense.pictures as pictures

    monkeypatch.setattr(pictures, "BAND_PIXELS", 5000)
    vis = SegLocalVisualizer.get_instance("test_any_size_pictures", alpha=0.5)
    rng = np.random.RandomState(0)
    classes = ["background", "square", "a long class name", "disk"]
    palette = [[10, 20, 30], [200, 0, 0], [0, 200, 0], [0, 0, 200]]
    for h, w in ((120, 160), (301, 700)):
        rgb = rng.randint(0, 256, (h, w, 3), dtype=np.uint8)
        yy, xx = np.mgrid[:h, :w]
        labels = ((yy // (h // 3) + xx // (w // 2)) % 5).astype(np.uint8)  # 4: no class, no colour
        want = vis._draw_sem_seg(rgb, PixelData(data=torch.from_numpy(labels)[None]), classes, palette, True)
        assert np.array_equal(pictures.seg_overlay(rgb, labels, classes, palette), want)
        many = [f"class {i}" for i in range(300)]  # past 256 classes the labels are uint16
        many_palette = rng.randint(0, 256, (300, 3)).tolist()
        big = labels.astype(np.uint16) + 297  # 297 .. 301: three classes and two values past them
        want = vis._draw_sem_seg(rgb, PixelData(data=torch.from_numpy(big.astype(np.int64))[None]), many,
                                 many_palette, True)
        assert np.array_equal(pictures.seg_overlay(rgb, big, many, many_palette), want)
        depth = (rng.rand(h, w) * 7 + 0.3).astype(np.float32)
        want = vis._draw_depth_map(rgb, PixelData(data=torch.from_numpy(depth)[None]))
        assert np.array_equal(pictures.depth_picture(rgb, depth), want)


def test_streamed_tta_is_mmseg_seg_tta_model(tmp_path, small_bands):
    """`--tta` streams each augmentation of the tta_pipeline (three scales x the flip) in step and merges bands as
    SegTTAModel merges whole predictions (mean softmax): the same labels as SegTTAModel.test_step, with windows."""
    pytest.importorskip("mmseg")
    from mmengine.config import Config
    from mmseg.registry import MODELS

    from pe_dense.mmseg.predict import _stream, _test_pipeline, tta_bands

    config = "upernet_pe-spatial-t_shapes-128x128.py"
    model, _ = _model_and_data(config, (110, 150), tmp_path,
                               dict(mode="slide", crop_size=(80, 80), stride=(56, 56), blend="mean"))
    pipeline = _test_pipeline(Config.fromfile(os.path.join(EMB, config)), tta=True)
    data = pipeline(dict(img_path=str(tmp_path / "img.png")))
    assert len(data["inputs"]) == 6
    tta = MODELS.build(dict(type="SegTTAModel", module=model))
    with torch.no_grad(), _upstream(model):
        want = tta.test_step(dict(inputs=[[x] for x in data["inputs"]],
                                  data_samples=[[s] for s in data["data_samples"]]))[0].pred_sem_seg.data[0]
    with torch.no_grad():
        probs = assemble((110, 150), ((y, [b]) for y, b in tta_bands(model, data)))[0]
    assert probs.shape == (4, 110, 150) and torch.allclose(probs.sum(0), torch.ones(110, 150), atol=1e-5)
    got = _stream(model, data, False, ["a", "b", "c", "d"], "cpu", tta=True)
    assert (got == want.numpy()).mean() > 0.999
    assert small_bands["windows"] > 10


@pytest.mark.parametrize("config,upstream", [("upernet_pe-spatial-t_shapes-128x128.py", "slide_inference"),
                                             ("dpt_pe-spatial-t_nyu-planes-120x160.py", "slide_flip_inference")])
def test_blend_mean_is_mmsegs_own_slide_inference(config, upstream, tmp_path):
    """The known answer from upstream: with ``blend="mean"`` our sliding windows (``PEEncoderDecoder`` /
    ``PEDepthEstimator``, ``pe_dense.modeling.windows``) equal mmseg's own ``EncoderDecoder.slide_inference`` and
    ``DepthEstimator.slide_flip_inference`` run on the same model, on an image whose sides are not multiples of the
    stride (windows clamped at the far edges, overlaps counted)."""
    pytest.importorskip("mmseg")
    from mmseg.models.segmentors import DepthEstimator, EncoderDecoder

    mode = "slide_flip" if upstream == "slide_flip_inference" else "slide"
    model, _ = _model_and_data(config, (64, 64), tmp_path, dict(mode=mode, crop_size=(64, 64), stride=(40, 40),
                                                                blend="mean"))
    x = torch.randn(1, 3, 101, 147)
    metas = [dict(img_shape=(101, 147), ori_shape=(101, 147), pad_shape=(101, 147))]
    base = DepthEstimator if mode == "slide_flip" else EncoderDecoder
    with torch.no_grad():
        want = getattr(base, upstream)(model, x, [dict(m) for m in metas])
        got = model.inference(x, [dict(m) for m in metas])
    assert got.shape == want.shape and (got - want).abs().max().item() < 1e-5

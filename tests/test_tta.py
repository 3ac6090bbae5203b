"""Test-time augmentation and any-size prediction in `pe-dense predict` and the evaluation tools: MMSeg's
SegTTAModel with every segmentation config's tta_pipeline, the flip for depth, blended windows on a large image,
Detectron2's GeneralizedRCNNWithTTA (mirrored image -> mirrored boxes), and the refusals."""
import glob
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from pe_dense.cli import main as cli
from pe_dense.data.images import shapes_image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMB = os.path.join(ROOT, "configs", "mmseg", "embedded")


def test_every_segmentation_config_has_a_tta_pipeline_with_scales_and_the_flip():
    pytest.importorskip("mmseg")
    from mmengine.config import Config

    seen = 0
    for path in glob.glob(os.path.join(ROOT, "configs", "mmseg", "*", "*.py")):
        if "_base_" in path:
            continue
        cfg = Config.fromfile(path)
        if cfg.model.type.endswith("DepthEstimator"):
            continue
        tta = next(t for t in cfg.tta_pipeline if t["type"] == "TestTimeAug")["transforms"]
        flips = [t for group in tta for t in group if t["type"] == "RandomFlip"]
        scales = [t for group in tta for t in group if t["type"] == "Resize" and "scale_factor" in t]
        assert cfg.tta_model.type == "SegTTAModel" and {f["prob"] for f in flips} == {0.0, 1.0} and len(scales) >= 2, \
            path
        seen += 1
    assert seen >= 13


def _mmseg_checkpoint(config, tmp_path):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    import pe_dense.mmseg  # noqa: F401

    cfg = Config.fromfile(config)
    cfg.model.backbone.pretrained = None
    init_default_scope("mmseg")
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    path = tmp_path / "model.pth"
    torch.save({"state_dict": model.state_dict(), "meta": {}}, path)
    return str(path)


def _predictions(config, hw, tmp_path, runs, raw):
    """A random-init checkpoint of ``config``, a picture of ``hw``, and ``pe-dense predict`` once per run (name ->
    extra arguments): each run's raw output (``raw``: labels or depth) as an array."""
    ckpt = _mmseg_checkpoint(config, tmp_path)
    img = tmp_path / "img.png"
    shapes_image(hw).save(img)
    outs = {}
    for name, extra in runs.items():
        cli(["predict", config, ckpt, str(img), "--out", str(tmp_path / name)] + extra)
        outs[name] = np.asarray(Image.open(tmp_path / name / f"img_{raw}.png"))
    return outs, ckpt, img


def test_mmseg_predict_with_tta_and_blended_windows_keeps_the_image_size(tmp_path, capsys):
    pytest.importorskip("mmseg")
    seg = os.path.join(EMB, "upernet_pe-spatial-t_shapes-128x128.py")
    outs, ckpt, img = _predictions(seg, (200, 300), tmp_path,
                                   {"plain": [], "tta": ["--tta"], "window": ["--window", "96"]}, "labels")
    assert all(o.shape == (200, 300) for o in outs.values())
    err = capsys.readouterr().err
    assert "windows" in err  # the progress bar over windows
    assert "give --window" not in err  # 300 x 200 is under 4x the 128 px crop: no hint
    assert (outs["tta"] != outs["plain"]).any() and (outs["window"] != outs["plain"]).any()
    for argv, msg in ((["--window", "512"], "larger than"), (["--window", "0"], "must be > 0")):
        with pytest.raises(SystemExit):
            cli(["predict", seg, ckpt, str(img), "--out", str(tmp_path / "bad")] + argv)
        assert msg in capsys.readouterr().err
    plain = tmp_path / "no_tta.py"
    plain.write_text(f"_base_ = [{seg!r}]\ntta_pipeline = None\n")
    with pytest.raises(SystemExit):
        cli(["predict", str(plain), ckpt, str(img), "--out", str(tmp_path / "bad"), "--tta"])
    assert "has no tta_pipeline" in capsys.readouterr().err


def test_mmseg_predict_hints_a_window_for_an_image_far_larger_than_the_crop(tmp_path, capsys):
    pytest.importorskip("mmseg")
    seg = os.path.join(EMB, "upernet_pe-spatial-t_shapes-128x128.py")
    outs, _, _ = _predictions(seg, (200, 400), tmp_path, {"plain": []}, "labels")
    assert outs["plain"].shape == (200, 400)
    assert "whole-image inference (the training crop is 128 x 128); if it runs out of memory, give --window 128" in \
        capsys.readouterr().err


def test_mmseg_depth_predict_with_the_flip(tmp_path):
    pytest.importorskip("mmseg")
    depth = os.path.join(EMB, "dpt_pe-spatial-t_nyu-planes-120x160.py")
    maps, _, _ = _predictions(depth, (120, 160), tmp_path, {"plain": [], "tta": ["--tta"]}, "depth")
    assert maps["tta"].shape == (120, 160) and (maps["tta"] != maps["plain"]).any()


def test_detectron2_tta_boxes_on_a_mirrored_image_mirror_the_originals(tmp_path):
    """GeneralizedRCNNWithTTA runs the image and its mirror at each scale and merges: on the mirrored image it runs
    the same pairs, so its boxes are the original's mirrored (random init, every detection kept)."""
    pytest.importorskip("detectron2")
    from detectron2.config import LazyConfig, instantiate

    from pe_dense.detectron2.predict import predict_detectron2

    cfg_path = os.path.join(ROOT, "configs", "detectron2", "shapes", "mask_rcnn_pe_spatial_t_shapes.py")
    cfg = LazyConfig.load(cfg_path)
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    ckpt = tmp_path / "model.pth"
    torch.save({"model": model.state_dict()}, ckpt)
    img = shapes_image((160, 160))
    img.save(tmp_path / "a.png")
    img.transpose(Image.FLIP_LEFT_RIGHT).save(tmp_path / "m.png")
    opts = ["model.roi_heads.box_predictor.test_score_thresh=0.0"]
    predict_detectron2(cfg_path, str(ckpt), [str(tmp_path / "a.png"), str(tmp_path / "m.png")], str(tmp_path),
                       opts, score_thresh=1e-9, tta=True)
    boxes = {k: np.array([d["box"] for d in json.load(open(tmp_path / f"{k}.json"))["instances"]]).reshape(-1, 4)
             for k in ("a", "m")}
    assert len(boxes["a"]) > 0 and len(boxes["a"]) == len(boxes["m"])
    mirrored = np.stack([160 - boxes["m"][:, 2], boxes["m"][:, 1], 160 - boxes["m"][:, 0], boxes["m"][:, 3]], 1)
    key = lambda b: sorted(map(tuple, np.round(b, 0)))  # noqa: E731
    a, m = np.array(key(boxes["a"])), np.array(key(mirrored))
    assert np.abs(a - m).max() <= 1.0


@pytest.mark.slow
def test_train_net_evaluates_with_tta_and_refuses_it_while_training(tmp_path):
    """``tools/train_net.py --eval-only --tta`` evaluates through GeneralizedRCNNWithTTA (random init: AP 0, the
    figures are the evaluator's); ``--tta`` without ``--eval-only`` stops before anything is written. The top 10
    detections per image (a random model's 100 each take the mask head over 4 augmentations: 4 s an image), from 50
    proposals (of the config's 200)."""
    pytest.importorskip("detectron2")
    import subprocess
    import sys

    from detectron2.config import LazyConfig, instantiate

    cfg_path = os.path.join(ROOT, "configs", "detectron2", "shapes", "mask_rcnn_pe_spatial_t_shapes.py")
    torch.manual_seed(0)
    ckpt = tmp_path / "model.pth"
    torch.save({"model": instantiate(LazyConfig.load(cfg_path).model).state_dict()}, ckpt)
    tool = [sys.executable, os.path.join(ROOT, "tools", "train_net.py"), "--config-file", cfg_path]
    bad = subprocess.run(tool + ["--tta", f"train.output_dir={tmp_path / 'train'}"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--tta goes with --eval-only" in bad.stderr and not (tmp_path / "train").exists()
    ok = subprocess.run(tool + ["--eval-only", "--tta", f"train.init_checkpoint={ckpt}",
                                f"train.output_dir={tmp_path / 'eval'}", "train.device=cpu",
                                "model.roi_heads.box_predictor.test_topk_per_image=10",
                                "model.proposal_generator.pre_nms_topk=[1000,100]",
                                "model.proposal_generator.post_nms_topk=[500,50]"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "test-time augmentation: GeneralizedRCNNWithTTA" in ok.stdout and "'segm'" in ok.stdout


def _mirror_symmetric(hw):
    """The left half of the built-in picture and its mirror image on the right: a picture equal to its mirror."""
    h, w = hw
    left = np.asarray(shapes_image((h, w)))[:, : w // 2]
    return Image.fromarray(np.concatenate([left, left[:, ::-1]], axis=1))


@pytest.mark.parametrize("config,raw", [("upernet_pe-spatial-t_shapes-128x128.py", "labels"),
                                        ("dpt_pe-spatial-t_nyu-planes-120x160.py", "depth")])
def test_predict_tta_of_a_mirror_symmetric_picture_is_mirror_symmetric(config, raw, tmp_path):
    """The known answer of the flip in `pe-dense predict --tta`: a picture equal to its mirror gets a prediction
    equal to its mirror (segmentation: the tta_pipeline's scales, each with the flip, merged; depth: the flip
    averaged), while the model alone (random init) is not symmetric. A flip that is not undone, or undone on one
    branch only, breaks it."""
    pytest.importorskip("mmseg")
    ckpt = _mmseg_checkpoint(os.path.join(EMB, config), tmp_path)
    img = tmp_path / "sym.png"
    _mirror_symmetric((120, 160)).save(img)
    outs = {}
    for name, extra in {"plain": [], "tta": ["--tta"]}.items():
        cli(["predict", os.path.join(EMB, config), ckpt, str(img), "--out", str(tmp_path / name)] + extra)
        outs[name] = np.asarray(Image.open(tmp_path / name / f"sym_{raw}.png")).astype(np.int64)
    asym = {k: (v != v[:, ::-1]).mean() if raw == "labels" else np.abs(v - v[:, ::-1]).max() for k, v in outs.items()}
    if raw == "labels":
        assert asym["tta"] == 0 and asym["plain"] > 1e-3, asym  # fraction of pixels unlike their mirror
    else:  # millimetres
        assert asym["tta"] <= 1 and asym["plain"] > 10, asym


def test_detectron2_tta_scales_are_the_configs_test_size_times_the_factors():
    """GeneralizedRCNNWithTTA's short sides are the config's test short side times 0.75 and 1, its long side the
    config's max size, with the flip: for the COCO recipes (1024 -> 768, 1024) and the embedded config (256 -> 192,
    256)."""
    pytest.importorskip("detectron2")
    from detectron2.config import LazyConfig, instantiate

    from pe_dense.detectron2.tta import with_tta

    for rel, short in (("COCO/mask_rcnn_pe_spatial_b_100ep.py", 1024),
                       ("shapes/mask_rcnn_pe_spatial_t_shapes.py", 256)):
        cfg = LazyConfig.load(os.path.join(ROOT, "configs", "detectron2", rel))
        cfg.model.backbone.model_name = "PE-Spatial-T16-512"
        cfg.model.backbone.square_pad = short
        with torch.device("meta"):
            model = instantiate(cfg.model)
        tta = with_tta(cfg, model).tta_mapper
        assert tuple(tta.min_sizes) == (int(0.75 * short), short) and tta.max_size == short and tta.flip

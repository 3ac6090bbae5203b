"""A user's own segmentation and depth folders through the MMSeg configs and --cfg-options, in the user's layout
(not ADE20K's or NYU's): training, evaluation, errors before training, and ``pe-dense predict`` pictures."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("mmseg")

sys.path.insert(0, os.path.dirname(__file__))
from minidata import write_user_depth, write_user_seg  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..")
CUSTOM = os.path.join(ROOT, "configs", "mmseg", "custom")
TOOL = [sys.executable, os.path.join(ROOT, "tools", "train_mmseg.py")]
# a CPU-sized run: 64 px crops, 4 iterations, evaluation at the end, no workers
SHORT = ["train_cfg.max_iters=4", "train_cfg.val_interval=4", "default_hooks.checkpoint.interval=4",
         "param_scheduler.0.end=2", "param_scheduler.1.begin=2", "param_scheduler.1.end=4",
         "model.backbone.pretrained=None", "model.data_preprocessor.size=(64,64)", "randomness.seed=0",
         "train_dataloader.batch_size=2"] + [f"{k}_dataloader.{o}" for k in ("train", "val")
                                              for o in ("num_workers=0", "persistent_workers=False")]


def _scalars(work_dir):
    import glob

    files = glob.glob(os.path.join(work_dir, "*", "vis_data", "scalars.json"))
    return [json.loads(line) for f in files for line in open(f)]


@pytest.mark.slow
def test_own_segmentation_folders_train_evaluate_and_predict(tmp_path):
    data = write_user_seg(str(tmp_path / "my_seg"))
    wd = tmp_path / "run"
    cfg = os.path.join(CUSTOM, "upernet_pe-spatial-t_custom-512x512.py")
    opts = [f"data_root={data}", "classes=classes.txt", "model.test_cfg.mode=whole",
            "train_dataloader.dataset.pipeline.2.scale=(256,64)",
            "train_dataloader.dataset.pipeline.3.crop_size=(64,64)", "val_dataloader.dataset.pipeline.1.scale=(256,64)"
            ] + SHORT
    r = subprocess.run(TOOL + [cfg, "--work-dir", str(wd), "--cfg-options"] + opts, cwd=ROOT, capture_output=True,
                       text=True)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-4000:]
    assert "classes: 3 (background, road, car), ignore index 255: set in the heads and the metric" in log
    final = [m for m in _scalars(wd) if "mIoU" in m][-1]
    assert re.search(r"\|\s+road\s+\|", log) and re.search(r"\|\s+car\s+\|", log)  # per class, the user's names
    ckpt = wd / "iter_4.pth"
    assert ckpt.is_file()

    from pe_dense.cli import main as cli

    images = [os.path.join(data, "images", "val", f) for f in ("s0.png", "s1.png")]  # the whole val split
    out = tmp_path / "pred"
    cli(["predict", cfg, str(ckpt)] + images + ["--out", str(out), "--device", "cpu", "--cfg-options"]
        + [o for o in opts if o.startswith(("model.test_cfg", "val_dataloader.dataset.pipeline"))]
        + ["test_pipeline.1.scale=(256,64)"])
    inter, union = np.zeros(3), np.zeros(3)
    for name in ("s0", "s1"):
        picture, labels = Image.open(out / f"{name}.png"), Image.open(out / f"{name}_labels.png")
        assert picture.size == labels.size == (128, 96) and picture.mode == "RGB" and labels.mode == "P"
        assert set(np.unique(np.asarray(labels))) <= {0, 1, 2}
        assert labels.getpalette()[3:6] == [128, 64, 128]  # classes.txt's colour of "road"
        pred, gt = np.asarray(labels), np.asarray(Image.open(os.path.join(data, "labels", "val", f"{name}.png")))
        pred, gt = pred[gt != 255], gt[gt != 255]
        for c in range(3):
            inter[c] += ((pred == c) & (gt == c)).sum()
            union[c] += ((pred == c) | (gt == c)).sum()
    # the training's evaluation scored the user's labels with the user's classes: recomputed by hand from the
    # predicted label maps of the same checkpoint (mmseg: intersections and unions summed over the split)
    assert final["mIoU"] == pytest.approx(100 * np.nanmean(inter / np.where(union > 0, union, np.nan)), abs=0.011)


@pytest.mark.slow
def test_own_depth_folders_npy_train_evaluate_and_predict(tmp_path):
    truth = write_user_depth(str(tmp_path / "my_depth"), fmt="npy")
    data = str(tmp_path / "my_depth")
    wd = tmp_path / "run"
    cfg = os.path.join(CUSTOM, "dpt_pe-spatial-t_custom-depth-480x480.py")
    opts = [f"data_root={data}", "depth_scale=1", "max_depth=9",
            "train_dataloader.dataset.pipeline.3.crop_size=(64,64)", "val_dataloader.dataset.pipeline.1.scale=(256,64)"
            ] + SHORT
    r = subprocess.run(TOOL + [cfg, "--work-dir", str(wd), "--cfg-options"] + opts, cwd=ROOT, capture_output=True,
                       text=True)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-4000:]
    assert "depth: max 9 m (head and metric), depth maps / 1 = metres" in log
    final = [m for m in _scalars(wd) if "rmse" in m][-1]
    assert {"d1", "abs_rel", "rmse", "silog"} <= set(final) and np.isfinite(final["rmse"])
    dumped = open(next(wd.glob("*.py"))).read()  # the config as it ran: max depth 9 in the head and the metric
    assert "max_depth=9.0" in dumped and "max_depth_eval=9.0" in dumped

    from pe_dense.cli import main as cli

    image = os.path.join(data, "images", "val", "d0.jpg")
    out = tmp_path / "pred"
    cli(["predict", cfg, str(wd / "iter_4.pth"), image, "--out", str(out), "--device", "cpu", "--cfg-options",
         f"data_root={data}", "depth_scale=1", "max_depth=9", "test_pipeline.1.scale=(256,64)"])
    picture, depth = Image.open(out / "d0.png"), np.asarray(Image.open(out / "d0_depth.png"))
    assert picture.size == (128, 2 * 96)  # the image above its depth colour map
    assert depth.dtype == np.uint16 and depth.shape == (96, 128) and 0 < depth.max() <= 9000  # millimetres, <= 9 m
    assert len(truth) == 6


def test_depth_png_and_npy_read_as_metres(tmp_path):
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS, TRANSFORMS

    import pe_dense.mmseg  # noqa: F401

    init_default_scope("mmseg")
    for fmt, scale in (("png", 1000), ("npy", 1)):
        truth = write_user_depth(str(tmp_path / fmt), fmt=fmt)
        ds = DATASETS.build(dict(type="PEFolderDepthDataset", data_root=str(tmp_path / fmt), depth_scale=scale,
                                 pipeline=[dict(type="PELoadDepthAnnotation")]))
        assert len(ds) == 4
        for i in range(len(ds)):
            info = ds.get_data_info(i)
            got = TRANSFORMS.build(dict(type="PELoadDepthAnnotation"))(dict(info))["gt_depth_map"]
            np.testing.assert_allclose(got, truth[info["depth_map_path"]], atol=5e-4)


@pytest.mark.parametrize("case", ["rgb labels", "missing label", "missing classes file", "value outside classes",
                                  "8-bit depth", "nan depth"])
def test_bad_own_folders_are_refused_before_training(tmp_path, case):
    seg = case in ("rgb labels", "missing label", "missing classes file", "value outside classes")
    if seg:
        data = write_user_seg(str(tmp_path / "d"))
        cfg, opts = "upernet_pe-spatial-t_custom-512x512.py", [f"data_root={data}"]
        lab = os.path.join(data, "labels", "train", "s1.png")
        if case == "rgb labels":
            Image.open(lab).convert("RGB").save(lab)
            message = r"s1.png is a RGB image; labels must hold one class index per pixel"
        elif case == "missing label":
            os.remove(lab)
            message = r"1 image\(s\) in .*images/train without a label in .*labels/train, e.g. s1.png"
        elif case == "missing classes file":
            opts.append("classes=names.txt")
            message = r"classes file not found: .*names.txt \(one class name per line"
        else:
            arr = np.asarray(Image.open(lab)).copy()
            arr[50, 50] = 7
            Image.fromarray(arr).save(lab)
            message = r"s1.png has label value\(s\) outside the 3 classes: \[7\]"
    else:
        write_user_depth(str(tmp_path / "d"), fmt="png" if case == "8-bit depth" else "npy")
        data = str(tmp_path / "d")
        cfg, opts = "dpt_pe-spatial-t_custom-depth-480x480.py", [f"data_root={data}"]
        if case == "8-bit depth":
            path = os.path.join(data, "depth", "train", "d2.png")
            Image.open(path).convert("L").save(path)
            message = r"d2.png is a 8-bit image; depth maps must be single-channel 16-bit"
        else:
            path = os.path.join(data, "depth", "val", "d1.npy")
            arr = np.load(path)
            arr[3, 3] = np.nan
            np.save(path, arr)
            message = r"d1.npy contains NaN; store missing depth as 0"
    wd = tmp_path / "run"
    r = subprocess.run(TOOL + [os.path.join(CUSTOM, cfg), "--work-dir", str(wd), "--cfg-options"] + opts, cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 2, (case, r.stdout[-2000:], r.stderr[-3000:])
    assert re.search(message, r.stderr), (case, r.stderr)
    assert not wd.exists()


def test_classes_n_names_the_classes_and_sets_the_heads(tmp_path):
    """``classes=N`` (no classes file): N classes named class_0.., set in both heads and the metric, and the data
    check holds the labels to them."""
    from mmengine.config import Config

    from pe_dense.mmseg.train import apply_dataset_keys, check_data

    data = write_user_seg(str(tmp_path / "my_seg"))
    os.remove(os.path.join(data, "classes.txt"))  # nothing but the number
    cfg = Config.fromfile(os.path.join(CUSTOM, "upernet_pe-spatial-t_custom-512x512.py"))
    options = {"data_root": data, "classes": 3}  # what --cfg-options data_root=... classes=3 gives the tool
    cfg.merge_from_dict(options)
    notes = apply_dataset_keys(cfg, options)
    assert notes == ["classes: 3 (class_0, class_1, class_2), ignore index 255: set in the heads and the metric"]
    assert cfg.model.decode_head.num_classes == cfg.model.auxiliary_head.num_classes == 3
    assert cfg.train_dataloader.dataset.classes == cfg.val_dataloader.dataset.classes == 3
    check_data(cfg, num_classes=3)  # labels 0..2 and 255: accepted
    options["classes"] = 2  # label value 2 is then outside the classes
    cfg = Config.fromfile(os.path.join(CUSTOM, "upernet_pe-spatial-t_custom-512x512.py"))
    cfg.merge_from_dict(options)
    apply_dataset_keys(cfg, options)
    with pytest.raises(Exception, match=r"outside the 2 classes: \[2\]"):
        check_data(cfg, num_classes=2)

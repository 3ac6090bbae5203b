"""A user's own data from the command line, in the user's layout (not a benchmark's): Detectron2 detection on a
COCO-format file with the user's categories."""
import json
import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("detectron2")

from detectron2.config import LazyConfig, instantiate  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from minidata import custom_overrides, write_user_coco  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..")
CUSTOM = os.path.join(ROOT, "configs", "detectron2", "custom")
TOOL = [sys.executable, os.path.join(ROOT, "tools", "train_net.py")]
# a CPU-sized run of the T config: 256 px LSJ, batch 2
SMALL = ["dataloader.train.mapper.augmentations.1.target_height=256",
         "dataloader.train.mapper.augmentations.1.target_width=256",
         "dataloader.train.mapper.augmentations.2.crop_size=[256,256]",
         "dataloader.test.mapper.augmentations.0.short_edge_length=256",
         "dataloader.test.mapper.augmentations.0.max_size=256", "model.backbone.square_pad=256",
         "dataloader.train.total_batch_size=2", "dataloader.train.num_workers=0", "dataloader.test.num_workers=0",
         "train.init_checkpoint=", "train.device=cpu",
         # fewer proposals and sampled RoIs on a CPU (the recipe's 2000/1000 and 512 took 8 s an iteration at 256 px)
         "model.proposal_generator.pre_nms_topk=[200,100]", "model.proposal_generator.post_nms_topk=[100,50]",
         "model.roi_heads.batch_size_per_image=64"]


def _cfg(size, files, *extra):
    cfg = LazyConfig.load(os.path.join(CUSTOM, f"mask_rcnn_pe_spatial_{size}_custom.py"))
    return LazyConfig.apply_overrides(cfg, custom_overrides(files) + list(extra))


@pytest.mark.slow
def test_custom_detection_trains_and_evaluates_from_the_command_line(tmp_path, user_coco):
    """tools/train_net.py with nothing but the dataset.* keys (and a CPU size): the classes come from the file,
    training runs, the COCO evaluation reports box and mask AP on the user's val file, pictures are drawn. For any
    seed (Detectron2 draws one): after 4 iterations from random init few scores pass the usual 0.05, so the model's
    test threshold is 0 and Mask R-CNN keeps its top 10 per image (of its usual 100: drawing 100 masks per picture
    costs a minute); the evaluation then always has detections to score (otherwise COCOEvaluator reports bbox AP as
    NaN and no mask AP)."""
    files, overrides = user_coco
    out = tmp_path / "run"
    r = subprocess.run(TOOL + ["--config-file", os.path.join(CUSTOM, "mask_rcnn_pe_spatial_t_custom.py")] + overrides
                       + SMALL + [f"train.output_dir={out}", "train.max_iter=4", "train.log_period=2",
                                  "model.roi_heads.box_predictor.test_score_thresh=0.0",
                                  "model.roi_heads.box_predictor.test_topk_per_image=10"],
                       cwd=ROOT, capture_output=True, text=True)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-4000:]
    assert ("custom data: 4 train images, 8 instances, 3 classes (bottle, can, carton), masks as polygons; "
            "train.max_iter 4 x batch 2 = 2.0 epochs") in log
    assert "Starting training from iteration 0" in log
    metrics = [json.loads(line) for line in open(out / "metrics.json")]
    final = [m for m in metrics if "bbox/AP" in m][-1]
    assert "segm/AP" in final and {"bbox/AP-bottle", "bbox/AP-can", "bbox/AP-carton"} <= set(final)
    assert len(os.listdir(out / "vis")) == 2  # the two val images, predictions drawn with the user's class names

    # pe-dense predict on the trained model: Detectron2's Visualizer picture and the instances as JSON
    from PIL import Image

    from pe_dense.cli import main as cli

    images = sorted(os.path.join(files["val"][1], f) for f in os.listdir(files["val"][1]))
    pred = tmp_path / "pred"
    # the model's own score threshold at 0 (after 4 iterations from random init few scores pass 0.05): Mask R-CNN
    # then keeps its top 10 per image, so the files must hold instances; --score-thresh filters them
    cli(["predict", os.path.join(CUSTOM, "mask_rcnn_pe_spatial_t_custom.py"), str(out / "model_final.pth")]
        + images + overrides + SMALL + ["model.roi_heads.box_predictor.test_score_thresh=0.0",
                                        "model.roi_heads.box_predictor.test_topk_per_image=10",
                                        "--out", str(pred), "--score-thresh", "0.001", "--device", "cpu"])
    for path in images:
        stem = os.path.splitext(os.path.basename(path))[0]
        picture = Image.open(pred / f"{stem}.png")
        assert picture.size == Image.open(path).size and picture.mode == "RGB"
        record = json.load(open(pred / f"{stem}.json"))
        assert record["image"] == os.path.abspath(path)
        found = record["instances"]
        assert found and all(r["class"] in ("bottle", "can", "carton") and r["score"] >= 0.001 for r in found)
        w, h = picture.size
        assert all(0 <= x0 <= x1 <= w and 0 <= y0 <= y1 <= h for x0, y0, x1, y1 in (r["box"] for r in found))
        assert [r["score"] for r in found] == sorted((r["score"] for r in found), reverse=True)


@pytest.mark.parametrize("size", ["t", "s", "b", "l", "g"])
def test_every_size_takes_the_same_keys(size, tmp_path):
    """The same four keys for every size; the heads get the file's classes; the schedule follows train.max_iter
    (ViTDet's steps at 88.9% / 96.3%, warm-up at most a tenth of the run)."""
    files = write_user_coco(str(tmp_path / "d"), categories=[dict(id=5, name="a"), dict(id=6, name="b")])
    cfg = _cfg(size, files, "train.max_iter=1000")
    with torch.device("meta"):
        model = instantiate(cfg.model)
    heads = model.roi_heads
    assert heads.num_classes == 2 and heads.box_predictor.num_classes == 2 and heads.mask_on
    assert heads.mask_head.predictor.out_channels == 2
    sched = instantiate(cfg.lr_multiplier)
    assert [sched(i / 1000) for i in (0, 100, 887, 888, 961, 962)] == pytest.approx(
        [0.001, 1.0, 1.0, 0.1, 0.1, 0.01])
    assert cfg.train.eval_period == 1000
    assert cfg.train.init_checkpoint == cfg.model.backbone.model_name  # the size's released weights


def test_rle_masks_train_as_bitmasks_and_boxes_only_has_no_mask_head(tmp_path):
    rle = write_user_coco(str(tmp_path / "rle"), masks="rle")
    cfg = _cfg("t", rle, *SMALL)
    assert instantiate(cfg.dataloader.train.mapper).instance_mask_format == "bitmask"
    batch = next(iter(instantiate(cfg.dataloader.train)))
    assert all(type(d["instances"].gt_masks).__name__ == "BitMasks" for d in batch)

    boxes = write_user_coco(str(tmp_path / "boxes"), masks=None)
    cfg = _cfg("t", boxes, *SMALL)
    model = instantiate(cfg.model)
    assert not model.roi_heads.mask_on
    batch = next(iter(instantiate(cfg.dataloader.train)))
    assert all(not d["instances"].has("gt_masks") for d in batch)
    model.train()
    from detectron2.utils.events import EventStorage

    with EventStorage(0):
        losses = model(batch)
    assert "loss_mask" not in losses and torch.isfinite(sum(losses.values()))


def _edit(path, fn):
    with open(path) as f:
        data = json.load(f)
    fn(data)
    with open(path, "w") as f:
        json.dump(data, f)


@pytest.mark.parametrize("case, edit, message", [
    ("missing image", lambda d: d["images"][0].update(file_name="nope.jpg"),
     r"1 image\(s\) named in .*train.json are missing under .*: nope.jpg"),
    ("no annotations", lambda d: d.update(annotations=[]), r"train.json: no annotations: nothing to train on"),
    ("undefined category", lambda d: d["annotations"][0].update(category_id=99),
     r"category id\(s\) that 'categories' does not define: 99"),
    ("duplicate category", lambda d: d["categories"].append(dict(id=3, name="again")),
     r"category id\(s\) listed twice: 3"),
    ("mixed masks", lambda d: d["annotations"][1].pop("segmentation"),
     r"1 of 8 annotations have no 'segmentation' \(ids 2\): give every instance a polygon or RLE mask, or none"),
    ("degenerate polygon", lambda d: d["annotations"][2].update(segmentation=[[1, 2, 3, 4]]),
     r"degenerate polygon .* annotation ids 3"),
    ("bad box", lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), r"without a valid 'bbox' .*ids 1"),
])
def test_bad_custom_data_is_refused_before_training(tmp_path, case, edit, message):
    files = write_user_coco(str(tmp_path / "d"))
    _edit(files["train"][0], edit)
    out = tmp_path / "run"
    r = subprocess.run(TOOL + ["--config-file", os.path.join(CUSTOM, "mask_rcnn_pe_spatial_t_custom.py")]
                       + custom_overrides(files) + [f"train.output_dir={out}"], cwd=ROOT, capture_output=True,
                       text=True)
    assert r.returncode == 2, (case, r.stdout[-2000:], r.stderr[-2000:])
    import re

    assert re.search(message, r.stderr), (case, r.stderr)
    assert r.stderr.count("\n") == 1 and not out.exists()  # one line, nothing written


def test_unset_keys_and_other_val_categories_are_named(tmp_path):
    from pe_dense.detectron2.custom import check_dataset

    files = write_user_coco(str(tmp_path / "d"))
    cfg = LazyConfig.load(os.path.join(CUSTOM, "mask_rcnn_pe_spatial_b_custom.py"))
    with pytest.raises(ValueError, match=r"dataset.train_json is not set: pass dataset.train_json=PATH"):
        check_dataset(cfg.dataloader.train.dataset)
    _edit(files["val"][0], lambda d: d["categories"][0].update(name="jar"))
    cfg = _cfg("b", files)
    check_dataset(cfg.dataloader.train.dataset)
    with pytest.raises(ValueError, match=r"val.json: its categories differ from the train file's .*only here: "
                                         r"\(3, 'jar'\); only there: \(3, 'bottle'\)"):
        check_dataset(cfg.dataloader.test.dataset)

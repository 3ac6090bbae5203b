"""The Detectron2 recipes train what they say: layer decay reaches the PE tower only, the released G recipes'
constants are pinned against the released configs, and every config's dataloaders load a miniature COCO / LVIS set
written in the real layout (through the tool, as a user runs it)."""
import glob
import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("detectron2")

from detectron2.config import LazyConfig, instantiate  # noqa: E402
from detectron2.solver.build import get_default_optimizer_params  # noqa: E402

import pe_dense  # noqa: E402
from pe_dense.optim import DETECTRON2_TOWER  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from minidata import write_lvis  # noqa: E402
from recipe_checks import assert_layer_decay  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..")
D2 = os.path.join(ROOT, "configs", "detectron2")
CONFIGS = sorted(c for c in glob.glob(os.path.join(D2, "*", "*.py")) if os.sep + "common" + os.sep not in c
                 and not os.path.basename(c).startswith("deta_"))  # Mask R-CNN family; DETA: tests/test_deta.py
BENCHMARK = [c for c in CONFIGS if os.sep + "shapes" + os.sep not in c]


def rel(c):
    return os.path.relpath(c, D2)


@pytest.mark.parametrize("path", CONFIGS, ids=[rel(c) for c in CONFIGS])
def test_layer_decay_reaches_the_tower_only(path, user_coco):
    cfg = LazyConfig.load(path)
    if "dataset" in cfg:  # configs/detectron2/custom: the user's data on the command line
        cfg = LazyConfig.apply_overrides(cfg, user_coco[1])
    with torch.device("meta"):
        model = instantiate(cfg.model)
    func = instantiate(cfg.optimizer.params.lr_factor_func)  # the tower's depth follows from its model name
    depth, decay = model.backbone.net.depth, func.keywords["lr_decay_rate"]
    assert func.keywords["num_layers"] == depth
    groups = get_default_optimizer_params(model, base_lr=1.0, weight_decay=0.1, lr_factor_func=func,
                                          weight_decay_norm=0.0)
    factor = {id(p): g["lr"] for g in groups for p in g["params"]}
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    tower = {id(p): n[len(DETECTRON2_TOWER):] for n, p in trained if n.startswith(DETECTRON2_TOWER)}
    heads = assert_layer_decay(trained, factor, tower, depth, decay)
    assert heads > 10


# The released configs of perception_models (apps/detection/projects/ViTDet/configs/{COCO,LVIS}/): every constant.
RELEASED_COMMON = dict(
    lr=5e-5, weight_decay=0.1, betas=(0.9, 0.999), overrides={}, weight_decay_norm=None, layer_decay=0.9,
    num_layers=50, drop_path=0.5, window=32, global_blocks=[12, 24, 36, 49], batch=64, pixel=[127.0] * 3,
    input_format="RGB", patch=16, pos_embed="tile", act_checkpoint=True, square_pad=1024, out_channels=256,
    scale_factors=(4.0, 2.0, 1.0, 0.5), warmup=250 / 184375, warmup_factor=0.001, values=[1.0, 0.1, 0.01],
    lsj=(0.1, 2.0, 1024), amp=True,
)
RELEASED = {
    "COCO/mask_rcnn_pe_spatial_g_36ep.py": dict(model="PE-Spatial-G14-448", ls=0.1, max_iter=66375,
                                               milestones=[59000, 63916], lvis=False),
    "COCO/mask_rcnn_pe_core_g_75ep.py": dict(model="PE-Core-G14-448", ls=None, max_iter=138281,
                                            milestones=[122916, 133159], lvis=False),
    "LVIS/mask_rcnn_pe_spatial_g_75ep.py": dict(model="PE-Spatial-G14-448", ls=0.1, max_iter=138281,
                                               milestones=[122916, 133159], lvis=True),
    "LVIS/mask_rcnn_pe_core_g_75ep.py": dict(model="PE-Core-G14-448", ls=None, max_iter=138281,
                                            milestones=[122916, 133159], lvis=True),
}


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_released_g_recipes_are_pinned(name):
    r = dict(RELEASED_COMMON, **RELEASED[name])
    cfg = LazyConfig.load(os.path.join(D2, name))
    bb, vit = cfg.model.backbone, cfg.model.backbone.vit
    assert bb.model_name == r["model"]
    assert pe_dense.get_spec(r["model"]).ls_init == r["ls"]
    assert (vit.patch_size, vit.window_size, list(vit.global_blocks), vit.pos_embed, vit.drop_path_rate,
            vit.act_checkpoint) == (r["patch"], r["window"], r["global_blocks"], r["pos_embed"], r["drop_path"],
                                    r["act_checkpoint"])
    assert (bb.out_channels, tuple(bb.scale_factors), bb.top_block, bb.norm, bb.square_pad) == (
        r["out_channels"], r["scale_factors"], True, "LN", r["square_pad"])
    assert list(cfg.model.pixel_mean) == r["pixel"] and list(cfg.model.pixel_std) == r["pixel"]
    assert cfg.model.input_format == r["input_format"]
    opt = cfg.optimizer
    assert (opt.lr, opt.weight_decay, tuple(opt.betas)) == (r["lr"], r["weight_decay"], r["betas"])
    assert dict(opt.params.overrides) == r["overrides"] and opt.params.weight_decay_norm is r["weight_decay_norm"]
    assert instantiate(opt.params.lr_factor_func).keywords == dict(lr_decay_rate=r["layer_decay"],
                                                                   num_layers=r["num_layers"])
    assert cfg.train.init_checkpoint == r["model"]  # the tower's released weights, by name (hub)
    assert cfg.dataloader.train.total_batch_size == r["batch"]
    aug = cfg.dataloader.train.mapper.augmentations
    assert (aug[1].min_scale, aug[1].max_scale, aug[1].target_height, tuple(aug[2].crop_size)) == (
        r["lsj"][0], r["lsj"][1], r["lsj"][2], (r["lsj"][2],) * 2)
    assert cfg.train.amp.enabled is r["amp"]
    assert cfg.train.max_iter == r["max_iter"]
    sched = cfg.lr_multiplier
    assert list(sched.scheduler.milestones) == r["milestones"] and sched.scheduler.num_updates == r["max_iter"]
    assert list(sched.scheduler["values"]) == r["values"]
    assert sched.warmup_length == r["warmup"] and sched.warmup_factor == r["warmup_factor"]
    assert round(sched.warmup_length * r["max_iter"]) == (90 if r["max_iter"] == 66375 else 187)
    lvis = cfg.dataloader.train.dataset.names == "lvis_v1_train"
    assert lvis == r["lvis"]
    if lvis:
        pred = cfg.model.roi_heads.box_predictor
        assert cfg.model.roi_heads.num_classes == 1203
        assert (pred.test_score_thresh, pred.test_topk_per_image, pred.use_sigmoid_ce, pred.use_fed_loss) == (
            0.02, 300, True, True)
        assert cfg.dataloader.train.sampler.repeat_factors.repeat_thresh == 0.001
        assert cfg.dataloader.evaluator.max_dets_per_image == 300 and cfg.train.eval_period == 30000


def test_lvis_l_keeps_vitdet_lvis_schedule():
    cfg = LazyConfig.load(os.path.join(D2, "LVIS/mask_rcnn_pe_spatial_l_100ep.py"))
    assert cfg.train.max_iter == 156250 and list(cfg.lr_multiplier.scheduler.milestones) == [138889, 150463]
    assert cfg.lr_multiplier.warmup_length == 250 / 156250 and cfg.optimizer.lr == 2e-4


def test_the_custom_data_schedule_is_the_coco_one_scaled():
    """One source for ViTDet's schedule (pe_dense.detectron2.schedules): the custom-data path, at the COCO run's
    length, gives the COCO config's milestones and warm-up."""
    from pe_dense.detectron2.schedules import ITERS_100EP, iter_milestones, warmup_fraction

    coco = LazyConfig.load(os.path.join(D2, "COCO/mask_rcnn_pe_spatial_b_100ep.py")).lr_multiplier
    assert coco.scheduler.num_updates == ITERS_100EP
    assert iter_milestones(ITERS_100EP) == list(coco.scheduler.milestones) == [163889, 177546]
    assert round(warmup_fraction(ITERS_100EP) * ITERS_100EP) == round(coco.warmup_length * ITERS_100EP) == 250


def test_yacs_and_lazy_defaults_agree():
    from detectron2.config import get_cfg

    from pe_dense.detectron2 import add_pe_config

    cfg = add_pe_config(get_cfg())
    lazy = LazyConfig.load(os.path.join(D2, "COCO/mask_rcnn_pe_spatial_b_100ep.py")).model.backbone.vit
    assert cfg.MODEL.PE.ROPE == lazy.rope == "interpolate"
    assert cfg.MODEL.PE.POS_EMBED == lazy.pos_embed and cfg.MODEL.PE.WINDOW_SIZE == lazy.window_size


@pytest.fixture(scope="module")
def d2_datasets(tmp_path_factory):
    return write_lvis(str(tmp_path_factory.mktemp("d2data")))  # coco/ and lvis/ as DETECTRON2_DATASETS wants


# One process for every config (Detectron2 imported once): the tool's own parser and main, as ``python
# tools/train_net.py --config-file PATH --check-data OPTS`` runs them, each config's output captured on its own.
CHECK_DATA = """
import contextlib, io, json, runpy, sys
tool = runpy.run_path(sys.argv[1])  # tools/train_net.py's functions (not run as __main__)
out = {}
for path, opts in json.loads(sys.argv[2]):
    buf, code = io.StringIO(), 0
    with contextlib.redirect_stdout(buf):
        try:
            tool["main"](tool["build_parser"]().parse_args(["--config-file", path, "--check-data"] + opts))
        except SystemExit as e:
            code = e.code
    out[path] = [code, buf.getvalue()]
print(json.dumps(out))
"""


@pytest.mark.slow
def test_every_config_loads_data_through_the_tool(d2_datasets, user_coco):
    """``tools/train_net.py --check-data`` on every COCO / LVIS config: the train loader (LSJ, polygon crops,
    repeat-factor sampling for LVIS) and the test loader each yield a batch from the miniature real-layout sets."""
    import json

    env = dict(os.environ, DETECTRON2_DATASETS=d2_datasets)
    small = ["dataloader.train.total_batch_size=2", "dataloader.train.num_workers=0", "dataloader.test.num_workers=0"]
    jobs = [(path, small + (user_coco[1] if os.sep + "custom" + os.sep in path else [])) for path in BENCHMARK]
    r = subprocess.run([sys.executable, "-c", CHECK_DATA, os.path.join(ROOT, "tools", "train_net.py"),
                        json.dumps(jobs)], env=env, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]
    results = json.loads(r.stdout.splitlines()[-1])
    assert sorted(results) == sorted(BENCHMARK)
    for path, (code, out) in results.items():
        assert code in (0, None) and "check-data: ok" in out, (rel(path), code, out[-2000:], r.stderr[-3000:])
        assert out.count("annotation file checked") == 2, out  # train and val json, before loading
        train_line = next(ln for ln in out.splitlines() if "dataloader.train" in ln)
        assert "a batch of 2 image(s)" in train_line and " 0 instances" not in train_line, out
        sizes = eval(train_line.split("sizes ")[1].split("]")[0] + "]")
        assert all(max(s) <= 1024 for s in sizes), out  # LSJ at 1024: ResizeScale(0.1, 2.0), FixedSizeCrop
